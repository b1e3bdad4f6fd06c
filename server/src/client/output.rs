//! How the CLI shows an answer: a list as a table of chosen columns, one
//! object as a two-column table of its fields, a change as one sentence.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use portico_app::model::storage::format_size;
use serde_json::Value;

/// A column: its heading and the field it shows (`a.b` for a nested one).
pub type Column = (&'static str, &'static str);

/// What the CLI prints for one call.
#[derive(Debug)]
pub struct Answer {
    /// The API's answer, printed as it is with `--json`.
    pub json: Value,
    pub view: View,
}

#[derive(Debug)]
pub enum View {
    /// `json` (or its field `within`) is a list: one row per item.
    Rows { within: Option<&'static str>, columns: &'static [Column] },
    /// `json` is one object: one row per field.
    Record,
    /// A change went through: this sentence.
    Done(String),
}

impl Answer {
    pub fn rows(json: Value, columns: &'static [Column]) -> Self {
        Answer { json, view: View::Rows { within: None, columns } }
    }

    pub fn record(json: Value) -> Self {
        Answer { json, view: View::Record }
    }

    pub fn done(json: Value, sentence: impl Into<String>) -> Self {
        Answer { json, view: View::Done(sentence.into()) }
    }

    pub fn render(&self) -> String {
        match &self.view {
            View::Done(sentence) => format!("{sentence}\n"),
            View::Record => record_table(&self.json),
            View::Rows { within, columns } => {
                let list = within.map_or(&self.json, |f| &self.json[f]);
                let empty = Vec::new();
                let items = list.as_array().unwrap_or(&empty);
                if items.is_empty() {
                    return "(none)\n".to_string();
                }
                let mut table = new_table();
                table.set_header(columns.iter().map(|(heading, _)| *heading));
                for item in items {
                    table.add_row(columns.iter().map(|(_, field)| cell_of(field, field_of(item, field))));
                }
                format!("{table}\n")
            }
        }
    }
}

fn new_table() -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    table
}

fn field_of<'a>(item: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(item, |v, key| &v[key])
}

/// A value as a table cell: text without quotes, a list joined by commas,
/// an object as compact JSON, nothing as "-".
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// A field's value as a cell; a byte count (`size`, `…_bytes`) also in
/// binary units, as the dashboard shows it.
fn cell_of(field: &str, value: &Value) -> String {
    let last = field.rsplit('.').next().unwrap_or(field);
    match value.as_u64() {
        Some(bytes) if last == "size" || last.ends_with("_bytes") => format_size(bytes),
        _ => cell(value),
    }
}

/// One row per field; a nested object's fields as `outer.inner`.
fn record_table(json: &Value) -> String {
    if !json.is_object() {
        return format!("{}\n", cell(json));
    }
    let mut rows = Vec::new();
    flatten("", json, &mut rows);
    let mut table = new_table();
    for (key, value) in rows {
        let shown = cell_of(&key, value);
        table.add_row(vec![key, shown]);
    }
    format!("{table}\n")
}

fn flatten<'a>(prefix: &str, value: &'a Value, rows: &mut Vec<(String, &'a Value)>) {
    match value.as_object() {
        Some(fields) if !fields.is_empty() => {
            for (key, inner) in fields {
                let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&key, inner, rows);
            }
        }
        _ => rows.push((prefix.to_string(), value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_becomes_a_table_of_the_chosen_columns() {
        let answer = Answer::rows(
            json!([{"name": "vol1", "size": 1024, "attached_to": null, "chap": {"mode": "none"}}]),
            &[("NAME", "name"), ("SIZE", "size"), ("GROUP", "attached_to"), ("CHAP", "chap.mode")],
        );
        let text = answer.render();
        for word in ["NAME", "vol1", "1 KiB", "-", "none"] {
            assert!(text.contains(word), "{word} missing in\n{text}");
        }
        assert_eq!(Answer::rows(json!([]), &[("NAME", "name")]).render(), "(none)\n");
    }

    #[test]
    fn cells_show_text_lists_and_nothing_plainly() {
        assert_eq!(cell(&json!("a")), "a");
        assert_eq!(cell(&json!(["a", "b"])), "a, b");
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(true)), "true");
        assert_eq!(cell_of("size", &json!(1073741824u64)), "1 GiB");
        assert_eq!(cell_of("capacity.free_bytes", &json!(1536)), "1.5 KiB");
    }

    #[test]
    fn a_record_shows_nested_fields_by_their_path() {
        let text = Answer::record(json!({"name": "g1", "chap": {"mode": "one-way", "user": "esx"}})).render();
        assert!(text.contains("chap.mode") && text.contains("one-way") && text.contains("chap.user"), "{text}");
    }
}
