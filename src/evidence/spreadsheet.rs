//! Spreadsheet-safe CSV cells: a cell a spreadsheet would run as a formula is neutralised
//! (TESTPLAN B5); the pack's JSON files keep the raw value.

use std::borrow::Cow;

/// Prefixes a cell that a spreadsheet would read as a formula (= + - @ tab CR) with `'`.
pub fn neutralize_csv_cell(cell: &str) -> String {
    safe_cell(cell).into_owned()
}

/// The same, borrowing the cell when it needs no prefix (most do not).
pub fn safe_cell(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::neutralize_csv_cell;

    #[test]
    fn formula_cells_are_neutralised() {
        for cell in ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(neutralize_csv_cell(cell).starts_with('\''), "{cell:?}");
        }
        assert_eq!(neutralize_csv_cell("Ann"), "Ann");
    }
}
