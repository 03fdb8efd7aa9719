//! Generates the manual pages and shell completions the Debian package ships,
//! from the sources they document, so they cannot drift:
//!
//! - nat64d(8) and nat64ctl(8) from the clap definitions (`nat64d::cli`),
//!   the same ones `--help` prints;
//! - nat64d.toml(5) from `systemd/nat64d.toml`, the commented example
//!   configuration whose completeness `cargo test` checks against the
//!   configuration's own types (every key the loader accepts is documented
//!   there, with its default);
//! - completions for bash, zsh and fish.
//!
//!     cargo run --example gen_docs -- OUT_DIR      (default target/docs)
//!
//! Manual pages are written gzip-compressed (no timestamp inside, so the
//! package is reproducible), as Debian installs them.

use clap::CommandFactory;
use clap_complete::Shell;
use nat64d::cli::{CtlArgs, DaemonArgs};
use std::io::Write;
use std::path::Path;

fn gz(path: &Path, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut z = flate2::GzBuilder::new().mtime(0).write(f, flate2::Compression::best());
    z.write_all(bytes).unwrap();
    z.finish().unwrap();
}

fn man(cmd: clap::Command, section: &str, extra: &str) -> Vec<u8> {
    let m = clap_mangen::Man::new(cmd)
        .section(section)
        .manual("nat64d")
        .source(concat!("nat64d ", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    m.render(&mut out).unwrap();
    out.extend_from_slice(extra.as_bytes());
    out
}

/// Text safe as a roff line: backslashes doubled, a leading dot or quote escaped.
fn roff(s: &str) -> String {
    let s = s.replace('\\', "\\\\");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// nat64d.toml(5) from the commented example: its header comment is the
/// description, each `[section]` a section, each key (set, or commented out
/// as an example) an entry with the comment lines above it.
fn config_page(example: &str) -> Vec<u8> {
    let mut o = String::new();
    o += &format!(
        ".TH NAT64D.TOML 5 \"\" \"nat64d {}\" \"nat64d\"\n.SH NAME\nnat64d.toml \\- configuration of the nat64d NAT64/DNS64 gateway\n",
        env!("CARGO_PKG_VERSION")
    );
    o += ".SH SYNOPSIS\n/etc/nat64d/nat64d.toml\n.SH DESCRIPTION\n";
    let mut comment: Vec<String> = vec![];
    let mut in_header = true;
    let is_key = |l: &str| {
        let l = l.trim_start_matches('#').trim();
        l.split_once('=').is_some_and(|(k, _)| {
            let k = k.trim();
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
    };
    let flush = |o: &mut String, c: &mut Vec<String>| {
        if !c.is_empty() {
            *o += ".PP\n";
            for l in c.drain(..) {
                *o += &(roff(&l) + "\n");
            }
        }
    };
    for line in example.lines() {
        let t = line.trim();
        if t.is_empty() {
            if in_header {
                flush(&mut o, &mut comment);
                in_header = false;
                o += ".SH KEYS\nEvery key is optional; values shown are the defaults unless marked as an example.\n";
            }
            continue;
        }
        let header = t.trim_start_matches('#').trim();
        if header.starts_with('[') && header.ends_with(']') && !header.contains('=') && !t.starts_with("# ") {
            flush(&mut o, &mut comment);
            o += &format!(".SS \"{}\"\n", roff(header));
            continue;
        }
        if is_key(t) && !(t.starts_with('#') && comment.last().is_some_and(|c| c.ends_with(':') || c.ends_with(','))) {
            let example = t.starts_with('#');
            let kv = t.trim_start_matches('#').trim();
            o += &format!(".TP\n\\fB{}\\fR{}\n", roff(kv), if example { " (example)" } else { "" });
            for l in comment.drain(..) {
                o += &(roff(&l) + "\n");
            }
            continue;
        }
        comment.push(t.trim_start_matches('#').trim().to_string());
    }
    flush(&mut o, &mut comment);
    o += ".SH FILES\n/etc/nat64d/nat64d.toml\n.SH SEE ALSO\nnat64d(8), nat64ctl(8)\n";
    o.into_bytes()
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "target/docs".into());
    let out = Path::new(&out);
    for d in ["man", "completions"] {
        std::fs::create_dir_all(out.join(d)).unwrap();
    }
    let see = |x: &str| format!(".SH \"SEE ALSO\"\n{x}, nat64d.toml(5)\n");
    gz(&out.join("man/nat64d.8.gz"), &man(DaemonArgs::command(), "8", &see("nat64ctl(8)")));
    gz(&out.join("man/nat64ctl.8.gz"), &man(CtlArgs::command(), "8", &see("nat64d(8)")));
    // One page per subcommand, as the main page's list names them (nat64ctl-who(8), ...).
    fn sub_pages(out: &Path, parent: &str, cmd: &clap::Command) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{parent}-{}", sub.get_name());
            let name_s: &'static str = Box::leak(name.clone().into_boxed_str());
            let page = sub.clone().name(name_s).bin_name(name.replace('-', " "));
            gz(&out.join(format!("man/{name}.8.gz")), &man(page, "8", ".SH \"SEE ALSO\"\nnat64ctl(8), nat64d(8)\n"));
            sub_pages(out, &name, sub);
        }
    }
    let mut ctl = CtlArgs::command();
    ctl.build();
    sub_pages(out, "nat64ctl", &ctl);
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/nat64d.toml")).unwrap();
    gz(&out.join("man/nat64d.toml.5.gz"), &config_page(&example));
    for (mut cmd, name) in [(DaemonArgs::command(), "nat64d"), (CtlArgs::command(), "nat64ctl")] {
        for (shell, file) in
            [(Shell::Bash, name.to_string()), (Shell::Zsh, format!("_{name}")), (Shell::Fish, format!("{name}.fish"))]
        {
            let mut f = std::fs::File::create(out.join("completions").join(file)).unwrap();
            clap_complete::generate(shell, &mut cmd, name, &mut f);
        }
    }
    println!("manual pages and completions in {}", out.display());
}
