//! Byte-level mutations of valid inputs, for the property tests that feed
//! the parsers of untrusted bytes (`fab`'s ZIP reader, `codec`'s
//! event decoding, `superlink::simulationio`'s PushEvents): byte flips,
//! edge values written over header fields, truncations, insertions and
//! removals. Compiled for tests only; it never runs in a build.

use proptest::prelude::*;
use proptest::sample::Index;

/// One byte-level mutation.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip(Index, u8),
    /// Overwrite a little-endian u16 or u32 field with an edge value.
    Field(Index, u32, bool),
    /// Keep only a prefix.
    Truncate(Index),
    /// Insert bytes.
    Insert(Index, Vec<u8>),
    /// Remove up to 16 bytes.
    Remove(Index, usize),
}

impl Mutation {
    pub fn strategy() -> impl Strategy<Value = Mutation> {
        let edge = prop_oneof![
            Just(0u32),
            Just(1),
            Just(8),
            Just(0x7F),
            Just(0x80),
            Just(0xFF),
            Just(0x0800),
            Just(0xFFFF),
            Just(0x7FFF_FFFF),
            Just(0xFFFF_FFFF),
            any::<u32>(),
        ];
        // In-place changes first: they keep offsets valid and reach deeper.
        prop_oneof![
            3 => (any::<Index>(), 1u8..=255).prop_map(|(i, m)| Mutation::Flip(i, m)),
            3 => (any::<Index>(), edge, any::<bool>()).prop_map(|(i, v, wide)| Mutation::Field(i, v, wide)),
            1 => any::<Index>().prop_map(Mutation::Truncate),
            1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8))
                .prop_map(|(i, b)| Mutation::Insert(i, b)),
            1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        ]
    }

    pub fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match self {
            Mutation::Flip(i, mask) => {
                let at = i.index(bytes.len());
                bytes[at] ^= mask;
            }
            Mutation::Field(i, value, wide) => {
                let at = i.index(bytes.len());
                let le = value.to_le_bytes();
                let width = if *wide { 4 } else { 2 };
                for (k, b) in le.iter().take(width).enumerate() {
                    if let Some(slot) = bytes.get_mut(at + k) {
                        *slot = *b;
                    }
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            Mutation::Insert(i, extra) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, extra.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let at = i.index(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
}

/// A strategy for 1 to `max` mutations in a row.
pub fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(Mutation::strategy(), 1..=max)
}

/// `bytes` with `mutations` applied in order.
pub fn mutated(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for m in mutations {
        m.apply(&mut out);
    }
    out
}
