//! A set of a subscription's topics, by their index in the subscription: a bit each, in
//! words of 64, so that a round over a few flagged topics of hundreds costs a few words.

/// Topics of one subscription, by index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberSet {
    words: Box<[u64]>,
    len: usize,
}

impl MemberSet {
    /// No topic of `len`.
    pub(crate) fn none(len: usize) -> Self {
        MemberSet {
            words: vec![0; len.div_ceil(64)].into(),
            len,
        }
    }

    /// Every topic of `len`.
    pub(crate) fn all(len: usize) -> Self {
        let mut set = MemberSet::none(len);
        set.fill();
        set
    }

    /// The word and the bit of topic `index`.
    pub(crate) fn place(index: usize) -> (usize, u64) {
        (index / 64, 1 << (index % 64))
    }

    /// The words: topic `i` is bit `i % 64` of word `i / 64`.
    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    pub(crate) fn insert(&mut self, index: usize) {
        let (word, bit) = MemberSet::place(index);
        self.words[word] |= bit;
    }

    /// Adds every topic.
    pub(crate) fn fill(&mut self) {
        for (word, bits) in self.words.iter_mut().enumerate() {
            let left = self.len - 64 * word;
            *bits = if left >= 64 {
                u64::MAX
            } else {
                (1 << left) - 1
            };
        }
    }

    /// Word `word` of the set, which loses it.
    pub(crate) fn take_word(&mut self, word: usize) -> u64 {
        std::mem::take(&mut self.words[word])
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.words.iter().all(|bits| *bits == 0)
    }
}

/// The topics whose bits are set in `bits`, word `word` of a set, in ascending order.
pub(crate) fn indexes(word: usize, mut bits: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if bits == 0 {
            return None;
        }
        let bit = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        Some(64 * word + bit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(set: &MemberSet) -> Vec<usize> {
        let words = set.words().iter().enumerate();
        words
            .flat_map(|(word, bits)| indexes(word, *bits))
            .collect()
    }

    #[test]
    fn all_holds_exactly_the_topics_of_its_length() {
        for len in [0, 1, 63, 64, 65, 128, 320] {
            assert_eq!(members(&MemberSet::all(len)), (0..len).collect::<Vec<_>>());
            assert!(MemberSet::none(len).is_empty());
            assert_eq!(MemberSet::all(len).is_empty(), len == 0);
        }
    }

    #[test]
    fn insert_and_take_word_keep_the_other_words() {
        let mut set = MemberSet::none(200);
        for index in [199, 0, 64, 63, 130, 64] {
            set.insert(index);
        }
        assert_eq!(members(&set), [0, 63, 64, 130, 199]);
        assert_eq!(set.take_word(1), 1);
        assert_eq!(members(&set), [0, 63, 130, 199]);
        assert_eq!(set.take_word(1), 0);
        set.fill();
        assert_eq!(members(&set), (0..200).collect::<Vec<_>>());
    }
}
