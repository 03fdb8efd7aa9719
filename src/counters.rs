//! One way to declare a set of named counters: [`counters!`] generates the
//! struct of plain `u64`s (serialised as it is), its `merge`, and its names
//! and help texts for the table and Prometheus; optionally a twin of
//! `AtomicU64`s for counters that threads share (the DNS64 server), with a
//! `snapshot`. Per-worker counters stay plain integers, summed on read.

/// `counters! { /// doc \n pub struct Name [shared SharedName] { field: "help", ... } }`
macro_rules! counters {
    (@shared [] $name:ident { $($field:ident)* }) => {};
    (@shared [$shared:ident] $name:ident { $($field:ident)* }) => {
        /// The shared, atomic form of the counters beside it.
        #[derive(Debug, Default)]
        pub struct $shared {
            $(pub $field: std::sync::atomic::AtomicU64,)*
        }

        impl $shared {
            /// The counters now (each read on its own, relaxed).
            pub fn snapshot(&self) -> $name {
                $name { $($field: self.$field.load(std::sync::atomic::Ordering::Relaxed),)* }
            }
        }
    };
    (
        $(#[$meta:meta])*
        pub struct $name:ident $([shared $shared:ident])? {
            $($field:ident: $help:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            $(#[doc = $help] pub $field: u64,)*
        }

        impl $name {
            /// Every counter's name and help, in declaration order.
            pub const FIELDS: &'static [(&'static str, &'static str)] = &[$((stringify!($field), $help),)*];

            /// Add another set of these counters into this one.
            pub fn merge(&mut self, o: &Self) {
                $(self.$field += o.$field;)*
            }

            /// (name, help, value) for each counter, in declaration order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> {
                Self::FIELDS.iter().zip([$(self.$field,)*]).map(|(&(n, h), v)| (n, h, v))
            }
        }

        $crate::counters::counters!(@shared [$($shared)?] $name { $($field)* });
    };
}

pub(crate) use counters;

#[cfg(test)]
mod tests {
    counters! {
        /// Two counters for the test.
        pub struct Pair [shared SharedPair] {
            first: "the first",
            second: "the second",
        }
    }

    #[test]
    fn merge_names_and_snapshot() {
        let mut a = Pair { first: 1, second: 2 };
        a.merge(&Pair { first: 10, second: 20 });
        assert_eq!(a, Pair { first: 11, second: 22 });
        let f: Vec<_> = a.fields().collect();
        assert_eq!(f, vec![("first", "the first", 11), ("second", "the second", 22)]);
        let s = SharedPair::default();
        s.second.fetch_add(5, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(s.snapshot(), Pair { first: 0, second: 5 });
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"first":11,"second":22}"#);
    }
}
