//! A xorshift generator for the codecs' randomized tests: cheap, seeded, the same sequence every run.

pub(crate) struct Random(pub(crate) u64);

impl Random {
    /// A number below `bound`.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }

    /// One of `items`.
    pub(crate) fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }

    /// Up to three pieces of text that JSON escapes differently (quotes, backslashes, control characters,
    /// multi-byte characters), so keys and strings repeat often.
    pub(crate) fn text(&mut self) -> String {
        const PIECES: [&str; 10] = ["a", "k", " ", "\"", "\\", "\n", "\u{1}", "é", "😀", "{"];
        (0..self.below(4)).map(|_| self.pick(&PIECES)).collect()
    }
}
