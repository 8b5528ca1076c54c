//! Pages of lists: which page numbers exist, and where a page starts.

/// The highest page number a list accepts: beyond any real list, and low enough that a page's
/// offset never overflows.
pub(super) const MAX_PAGE: i64 = 1_000_000;

/// Whether `page` is a page number a list accepts.
pub(super) fn valid(page: i64) -> bool {
    (1..=MAX_PAGE).contains(&page)
}

/// The offset of the first row of `page` (from 1) when pages hold `limit` rows; `None` for a
/// page number out of range.
pub(super) fn offset(page: i64, limit: i64) -> Option<i64> {
    valid(page).then(|| (page - 1) * limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_start_at_one_and_stop_before_offsets_overflow() {
        assert_eq!(offset(1, 20), Some(0));
        assert_eq!(offset(3, 20), Some(40));
        assert_eq!(offset(0, 20), None);
        assert_eq!(offset(-5, 20), None);
        assert_eq!(offset(i64::MAX, 500), None);
        assert!(offset(MAX_PAGE, 500).is_some());
    }
}
