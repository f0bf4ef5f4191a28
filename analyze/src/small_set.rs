//! A sorted set kept inline while small: a destination's hours, days and users within
//! one file are one or two values, and a heap set per destination per file dominated
//! the cost of reading datasets of many small files.

use smallvec::SmallVec;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SmallSet<T: Ord + Copy>(SmallVec<[T; 2]>);

impl<T: Ord + Copy> SmallSet<T> {
    pub fn insert(&mut self, x: T) {
        // Rows come in time order: the newest value is usually the last.
        if self.0.last().is_some_and(|&l| l < x) || self.0.is_empty() {
            self.0.push(x);
        } else if let Err(at) = self.0.binary_search(&x) {
            self.0.insert(at, x);
        }
    }

    pub fn extend(&mut self, other: &SmallSet<T>) {
        for &x in &other.0 {
            self.insert(x);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_sorted_and_unique_whatever_the_order() {
        let mut s = SmallSet::default();
        for x in [5, 1, 5, 9, 1, 3, 9, 0] {
            s.insert(x);
        }
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [0, 1, 3, 5, 9]);
        let mut t = SmallSet::default();
        t.insert(4);
        t.insert(10);
        s.extend(&t);
        assert_eq!(
            s.iter().copied().collect::<Vec<_>>(),
            [0, 1, 3, 4, 5, 9, 10]
        );
    }
}
