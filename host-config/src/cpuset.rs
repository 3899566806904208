//! Sets of CPU (or NUMA node) numbers in the kernel's list format: `0-3,8,10-11`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The highest CPU number accepted in a list. The kernel's own limit (`NR_CPUS`) is at
/// most 8192; refusing more keeps a typo like `0-4000000000` from allocating gigabytes.
pub const MAX_CPU: u32 = 8191;

/// A list that is not in the kernel's `0-3,8` format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuSetError {
    /// A piece is not a number or a range of numbers.
    #[error("`{piece}` in `{list}` is not a number or a range like `2-5`")]
    Syntax {
        /// The whole list.
        list: String,
        /// The offending piece.
        piece: String,
    },
    /// A range runs backwards.
    #[error("range `{piece}` in `{list}` runs backwards; write it low-high")]
    Backwards {
        /// The whole list.
        list: String,
        /// The offending range.
        piece: String,
    },
    /// A number is above [`MAX_CPU`].
    #[error("CPU {value} in `{list}` is above the kernel's limit of {MAX_CPU}")]
    TooLarge {
        /// The whole list.
        list: String,
        /// The offending number.
        value: u64,
    },
}

/// An ordered set of CPU numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuSet(BTreeSet<u32>);

impl CpuSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse the kernel's list format (`0-3,8`); an empty or blank string is the empty
    /// set, and a trailing newline is ignored.
    pub fn parse(list: &str) -> Result<Self, CpuSetError> {
        let mut set = BTreeSet::new();
        let trimmed = list.trim();
        for piece in trimmed.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let num = |s: &str| -> Result<u32, CpuSetError> {
                let v: u64 = s.trim().parse().map_err(|_| CpuSetError::Syntax {
                    list: trimmed.to_string(),
                    piece: piece.to_string(),
                })?;
                if v > u64::from(MAX_CPU) {
                    return Err(CpuSetError::TooLarge {
                        list: trimmed.to_string(),
                        value: v,
                    });
                }
                // In range by the check above.
                Ok(v as u32)
            };
            match piece.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (num(lo)?, num(hi)?);
                    if lo > hi {
                        return Err(CpuSetError::Backwards {
                            list: trimmed.to_string(),
                            piece: piece.to_string(),
                        });
                    }
                    set.extend(lo..=hi);
                }
                None => {
                    set.insert(num(piece)?);
                }
            }
        }
        Ok(Self(set))
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    /// Add `cpu`; returns whether it was new.
    pub fn insert(&mut self, cpu: u32) -> bool {
        self.0.insert(cpu)
    }

    /// Remove `cpu`; returns whether it was there.
    pub fn remove(&mut self, cpu: u32) -> bool {
        self.0.remove(&cpu)
    }

    /// Number of CPUs in the set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CPUs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// The lowest CPU, if any.
    pub fn first(&self) -> Option<u32> {
        self.0.first().copied()
    }

    /// CPUs in both sets.
    pub fn intersection(&self, other: &Self) -> Self {
        Self(self.0.intersection(&other.0).copied().collect())
    }

    /// CPUs in either set.
    pub fn union(&self, other: &Self) -> Self {
        Self(self.0.union(&other.0).copied().collect())
    }

    /// CPUs in `self` but not in `other`.
    pub fn difference(&self, other: &Self) -> Self {
        Self(self.0.difference(&other.0).copied().collect())
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether the sets share no CPU.
    pub fn is_disjoint(&self, other: &Self) -> bool {
        self.0.is_disjoint(&other.0)
    }

    /// The CPUs as a vector, ascending.
    pub fn to_vec(&self) -> Vec<u32> {
        self.0.iter().copied().collect()
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Extend<u32> for CpuSet {
    fn extend<I: IntoIterator<Item = u32>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl FromStr for CpuSet {
    type Err = CpuSetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The kernel's compact list format; the empty set prints as the empty string (which is
/// also what cgroupfs expects for "no CPUs").
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut it = self.0.iter().copied().peekable();
        while let Some(lo) = it.next() {
            let mut hi = lo;
            while it.peek() == Some(&(hi + 1)) {
                hi += 1;
                it.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if hi == lo {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for CpuSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CpuSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_kernel_lists() {
        let s = CpuSet::parse("0-3,8,10-11\n").unwrap();
        assert_eq!(s.to_vec(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(s.to_string(), "0-3,8,10-11");
        assert_eq!(CpuSet::parse("").unwrap(), CpuSet::new());
        assert_eq!(CpuSet::parse(" 5 ").unwrap().to_string(), "5");
        assert_eq!(CpuSet::parse("3,1,2").unwrap().to_string(), "1-3");
    }

    #[test]
    fn rejects_bad_lists_naming_the_piece() {
        let e = CpuSet::parse("0-3,x").unwrap_err();
        assert!(e.to_string().contains("`x`"), "{e}");
        let e = CpuSet::parse("5-2").unwrap_err();
        assert!(matches!(e, CpuSetError::Backwards { .. }), "{e}");
        let e = CpuSet::parse("0-4000000000").unwrap_err();
        assert!(matches!(e, CpuSetError::TooLarge { .. }), "{e}");
        assert!(CpuSet::parse("-1").is_err());
    }

    #[test]
    fn set_operations() {
        let a = CpuSet::parse("0-3").unwrap();
        let b = CpuSet::parse("2-5").unwrap();
        assert_eq!(a.intersection(&b).to_string(), "2-3");
        assert_eq!(a.union(&b).to_string(), "0-5");
        assert_eq!(a.difference(&b).to_string(), "0-1");
        assert!(!a.is_disjoint(&b));
        assert!(CpuSet::parse("1").unwrap().is_subset(&a));
    }
}
