//! Test support: the ways a time's updates can reach an operator in several batches.

/// Every cut of `items` into three consecutive batches, each possibly empty: state that takes
/// updates in several batches must end where one batch of them leaves it.
pub(crate) fn three_way_cuts<T>(items: &[T]) -> impl Iterator<Item = [&[T]; 3]> {
    (0..=items.len()).flat_map(move |first| {
        (first..=items.len())
            .map(move |second| [&items[..first], &items[first..second], &items[second..]])
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_cut_once() {
        let cuts: Vec<[&[u8]; 3]> = super::three_way_cuts(&[1, 2]).collect();
        let expected: Vec<[&[u8]; 3]> = vec![
            [&[], &[], &[1, 2]],
            [&[], &[1], &[2]],
            [&[], &[1, 2], &[]],
            [&[1], &[], &[2]],
            [&[1], &[2], &[]],
            [&[1, 2], &[], &[]],
        ];
        assert_eq!(cuts, expected);
    }
}
