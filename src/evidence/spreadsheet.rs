//! Spreadsheet-safe CSV cells: a cell a spreadsheet would run as a formula is neutralised
//! (TESTPLAN B5); the pack's JSON files keep the raw value. And the verifier's reading of
//! such rows back: the next row must be exactly what the JSON row makes of it.

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

/// Whether the next row of a CSV file (read side by side with its JSON twin) is `expected`;
/// a row that cannot be read is an error naming `file` and its row number.
pub fn next_row_is<R: std::io::Read>(
    rows: &mut csv::StringRecordsIter<'_, R>,
    expected: &[String],
    file: &str,
    row_number: usize,
) -> Result<bool, String> {
    let row = rows
        .next()
        .transpose()
        .map_err(|e| format!("{file} row {row_number}: {e}"))?;
    Ok(row.is_some_and(|row| row.iter().eq(expected.iter().map(String::as_str))))
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
