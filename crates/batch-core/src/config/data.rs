//! A step's data file (`data = "orders.csv"`): one row per iteration, read by
//! `{data.FIELD}` in the step's actions.
//!
//! A CSV with a header row. With an `account` column, each account's iterations take
//! the rows whose `account` is its id, in file order; without one, every account's
//! iteration `i` takes row `i`. An empty cell is an empty value (unlike an accounts
//! file, where it means "no such field"): a row is a record, and a column is either
//! there for every row or not at all. Columns named like secrets (`password`, `token`,
//! …) are secret, as in an accounts file.
//!
//! This module does not decide whether there are enough rows for a run (the plan
//! knows `--quantity`) nor whether a template names a column that exists (that is
//! `check_templates`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::accounts::{csv_error, header_problem};
use super::secrets::is_secret_name;
use super::{AccountId, ConfigError, FieldValue};

/// The column that gives a row to one account.
pub const ACCOUNT_COLUMN: &str = "account";

/// A step's data file, loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepData {
    /// Where it came from.
    pub path: PathBuf,
    /// Its columns, in header order (`account` included when there).
    pub columns: Vec<String>,
    /// Every row, in file order.
    rows: Vec<DataRow>,
    by_account: bool,
}

/// One row: its line in the file, its account if the file has that column, and its
/// values by column (`account` left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRow {
    /// 1-based line in the data file.
    pub line: usize,
    /// The account it is for (with an `account` column).
    pub account: Option<AccountId>,
    /// The values, by column.
    pub fields: BTreeMap<String, FieldValue>,
}

impl StepData {
    /// The rows `account`'s iterations take, in order: its own with an `account`
    /// column, else all of them.
    pub fn rows_for(&self, account: AccountId) -> impl Iterator<Item = &DataRow> {
        let by_account = self.by_account;
        self.rows
            .iter()
            .filter(move |r| !by_account || r.account == Some(account))
    }

    /// The row of `account`'s `iteration` (1-based); none for iteration 0 (`before`,
    /// `after`) or past the last row.
    pub fn row(&self, account: AccountId, iteration: u32) -> Option<&DataRow> {
        let index = usize::try_from(iteration).ok()?.checked_sub(1)?;
        self.rows_for(account).nth(index)
    }

    /// Every secret value in the file.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        (self.rows.iter().flat_map(|r| r.fields.values()))
            .filter(|v| v.secret && !v.value.is_empty())
            .map(|v| v.value.as_str())
    }
}

/// `fn("card-token") -> "BATCH_DATA_CARD_TOKEN"`: the environment variable an `exec`
/// program reads a data column from, named like an account field's.
pub fn data_env_name(column: &str) -> String {
    let name = super::exec_env_name(column);
    name.replacen("BATCH_ACCOUNT_", "BATCH_DATA_", 1)
}

/// `fn(path) -> StepData`: reads the CSV at `path` (the workflow's `data` key names it,
/// relative to the workflow file).
pub fn load_data(path: &Path) -> Result<StepData, ConfigError> {
    let text = super::error::read_text(path, "a CSV data file with a header row")?;
    parse_data(path, &text)
}

pub(crate) fn parse_data(path: &Path, text: &str) -> Result<StepData, ConfigError> {
    let invalid =
        |line: Option<usize>, field: &str, m: String| ConfigError::invalid(path, line, field, m);
    let csv_err = |e| csv_error(path, e);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::Headers)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(csv_err)?.clone();
    if let Some(message) = header_problem(&headers) {
        return Err(invalid(Some(1), "", message));
    }
    let columns: Vec<String> = headers.iter().map(str::to_owned).collect();
    let account_column = columns.iter().position(|c| c == ACCOUNT_COLUMN);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let account = match account_column {
            // The cell is not quoted back: in a misaligned row it could be a secret.
            Some(i) => Some(
                super::lists::whole(record.get(i).unwrap_or("")).ok_or_else(|| {
                    invalid(
                        Some(line),
                        ACCOUNT_COLUMN,
                        "not an account id (expected the non-negative integer id of an account)"
                            .into(),
                    )
                })?,
            ),
            None => None,
        };
        let mut fields = BTreeMap::new();
        for (i, (name, value)) in headers.iter().zip(record.iter()).enumerate() {
            if Some(i) == account_column {
                continue;
            }
            let secret = is_secret_name(name);
            let value = value.to_owned();
            fields.insert(name.to_owned(), FieldValue { value, secret });
        }
        rows.push(DataRow {
            line,
            account,
            fields,
        });
    }
    if rows.is_empty() {
        return Err(invalid(
            None,
            "",
            "no rows (expected a row per iteration after the header)".into(),
        ));
    }
    Ok(StepData {
        path: path.to_path_buf(),
        columns,
        rows,
        by_account: account_column.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<StepData, String> {
        parse_data(Path::new("d.csv"), text).map_err(|e| e.to_string())
    }

    fn values(d: &StepData, account: AccountId, column: &str) -> Vec<String> {
        (d.rows_for(account))
            .map(|r| r.fields[column].value.clone())
            .collect()
    }

    #[test]
    fn shared_rows_go_to_every_account_by_iteration() {
        let d = load("item,note\n7,first\n9,\n").unwrap();
        assert_eq!(values(&d, 1, "item"), ["7", "9"]);
        assert_eq!(values(&d, 42, "item"), ["7", "9"]);
        assert_eq!(
            d.row(3, 2).unwrap().fields["note"].value,
            "",
            "an empty cell is empty"
        );
        assert_eq!(d.row(3, 2).unwrap().line, 3);
        assert!(d.row(3, 0).is_none(), "before/after take no row");
        assert!(d.row(3, 3).is_none());
        assert_eq!(d.columns, ["item", "note"]);
    }

    #[test]
    fn an_account_column_gives_each_account_its_own_rows_in_order() {
        let d = load("account,item\n2,5\n1,6\n2,7\n").unwrap();
        assert_eq!(values(&d, 2, "item"), ["5", "7"]);
        assert_eq!(values(&d, 1, "item"), ["6"]);
        assert!(values(&d, 3, "item").is_empty());
        assert_eq!(d.row(2, 2).unwrap().account, Some(2));
        assert!(!d.row(2, 1).unwrap().fields.contains_key("account"));
    }

    #[test]
    fn secret_columns_are_secret() {
        let d = load("item,card_token\n1,tok-1\n2,\n").unwrap();
        assert!(d.row(1, 1).unwrap().fields["card_token"].secret);
        assert!(!d.row(1, 1).unwrap().fields["item"].secret);
        assert_eq!(d.secrets().collect::<Vec<_>>(), ["tok-1"]);
    }

    #[test]
    fn bad_files_name_the_line_and_never_quote_a_cell() {
        for (text, expected) in [
            ("item\n", "d.csv: no rows (expected a row per iteration"),
            ("item,item\n1,2\n", "d.csv:1: column \"item\" appears twice"),
            ("item,\n1,2\n", "d.csv:1: column 2 has no name"),
            (
                "item,note\n1\n",
                "d.csv:2: a row with 1 values, but the header has 2",
            ),
            (
                "account,item\n1,a\nx-secret,b\n",
                "d.csv:3: account: not an account id (expected the non-negative integer id",
            ),
        ] {
            let got = load(text).unwrap_err();
            assert!(got.starts_with(expected), "{text:?}: {got}");
            assert!(!got.contains("x-secret"), "{got}");
        }
    }
}
