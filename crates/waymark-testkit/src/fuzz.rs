//! The seeded generator and the splicing of a seed text that `cargo xtask
//! fuzz` and the unit tests that fuzz a parser of the binary's own
//! (`waymark.toml`'s) share: on stable Rust, and the same inputs for the
//! same seed.

/// What any TOML file is made of, and the values that test a reader's
/// limits; each file's fuzzing adds its own keys.
pub const TOML_TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\n",
    "#",
    "{",
    "}",
    ",",
    "\"\"\"",
    "\"\"",
    "0",
    "-1",
    "1e400",
    "9223372036854775807",
    "9999999999999999999",
    "true",
    "\\u0000",
    "é",
    "unknown = 1",
];

/// xorshift64*: small, fast, and the same sequence for the same seed.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 for 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One of `items`, which must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A character boundary of `text`, anywhere from its start to its end.
pub fn boundary(rng: &mut Rng, text: &str) -> usize {
    let mut at = rng.below(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The first character boundary of `text` at or after `at` (its end at
/// most).
pub fn ceil_boundary(text: &str, at: usize) -> usize {
    (at.min(text.len())..=text.len())
        .find(|e| text.is_char_boundary(*e))
        .unwrap_or(text.len())
}

/// `seed` cut and spliced `rounds` times: one of `tokens` put in, a
/// stretch of up to `cut` bytes taken out, or a piece of up to `graft`
/// bytes of `seed` put in again elsewhere.
pub fn splice(rng: &mut Rng, seed: &str, tokens: &[&str], rounds: usize, (cut, graft): (usize, usize)) -> String {
    let mut text = seed.to_owned();
    for _ in 0..rounds {
        let at = boundary(rng, &text);
        match rng.below(3) {
            0 => text.insert_str(at, rng.pick::<&str>(tokens)),
            1 => {
                let end = ceil_boundary(&text, at + 1 + rng.below(cut));
                text.replace_range(at..end, "");
            }
            _ => {
                let from = boundary(rng, seed);
                let to = ceil_boundary(seed, from + 1 + rng.below(graft));
                text.insert_str(at, &seed[from..to]);
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_text_and_every_cut_is_on_a_character() {
        let tokens = ["é", "\"", "[x]"];
        let make = || {
            let mut rng = Rng(9);
            (0..200)
                .map(|_| splice(&mut rng, "a = \"ü\"\n[b]\n", &tokens, 4, (8, 8)))
                .collect::<Vec<_>>()
        };
        let texts = make();
        assert_eq!(texts, make());
        assert!(texts.iter().any(|t| t.contains("[x]")));
        assert!(texts.iter().any(|t| !t.contains('ü')));
    }
}
