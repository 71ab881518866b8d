//! CSV exports: one rule for every file people open in a spreadsheet.

/// Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` as a
/// formula, and some also after a leading TAB or CR (OWASP, "CSV
/// injection"): such a cell gets a leading `'`, which they show as text.
/// Every exported cell that holds what a person typed goes through this.
pub fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_that_a_spreadsheet_would_run_are_defused_and_the_rest_kept() {
        for risky in ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1+1", "\r=1+1"] {
            assert_eq!(cell(risky), format!("'{risky}"));
        }
        for plain in ["Ann", "", "O'Neill", "1-1", "a=b"] {
            assert_eq!(cell(plain), plain);
        }
    }
}
