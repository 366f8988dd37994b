//! What a command prints: one [`Report`] holding both forms, a JSON document
//! for scripts (`--json`) and blocks (tables, text) for people.
//!
//! Commands build the report; this module alone decides how it looks, so
//! every command aligns, colours and degrades the same way. Colours only on a
//! terminal and never when `NO_COLOR` is set (<https://no-color.org>).

use std::io::{self, IsTerminal, Write};

use comfy_table::{Cell as TableCell, Color, ContentArrangement, Table as ComfyTable, presets};
use serde_json::Value;

/// How a cell reads at a glance (a colour on a terminal, plain elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tone {
    /// No emphasis.
    #[default]
    Plain,
    /// Healthy, alive, ok.
    Good,
    /// Needs a look: late, few instances.
    Warn,
    /// Wrong: dead, missing, failing.
    Bad,
    /// Less important detail.
    Dim,
}

/// One table cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The text shown.
    pub text: String,
    /// Its emphasis.
    pub tone: Tone,
}

impl Cell {
    /// A cell with the given tone.
    pub fn new(text: impl Into<String>, tone: Tone) -> Cell {
        Cell {
            text: text.into(),
            tone,
        }
    }
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Cell {
        Cell::new(text, Tone::Plain)
    }
}

/// A table for people: headers and rows of cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows, each as long as `headers`.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these headers and no rows.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row<C: Into<Cell>>(&mut self, cells: impl IntoIterator<Item = C>) -> &mut Table {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }
}

/// One part of the human form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// An aligned table (an empty one prints its headers and "(none)").
    Table(Table),
    /// Text printed as is (a trailing newline is added when missing).
    Text(String),
    /// A heading line above the next block.
    Heading(String),
}

/// Everything a command prints on success.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The `--json` document.
    pub json: Value,
    /// The human form, block by block.
    pub blocks: Vec<Block>,
}

impl Report {
    /// A report with this JSON document and no human blocks yet.
    pub fn new(json: Value) -> Report {
        Report {
            json,
            blocks: Vec::new(),
        }
    }

    /// Adds a table.
    pub fn table(mut self, table: Table) -> Report {
        self.blocks.push(Block::Table(table));
        self
    }

    /// Adds text.
    pub fn text(mut self, text: impl Into<String>) -> Report {
        self.blocks.push(Block::Text(text.into()));
        self
    }

    /// Adds a heading.
    pub fn heading(mut self, text: impl Into<String>) -> Report {
        self.blocks.push(Block::Heading(text.into()));
        self
    }
}

/// How to print: JSON or people's form, with or without colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Print the JSON document.
    pub json: bool,
    /// Use colours (a terminal, and `NO_COLOR` unset).
    pub color: bool,
}

impl Style {
    /// The style for stdout: colour only on a terminal without `NO_COLOR`.
    pub fn detect(json: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            json,
            color: !json && !no_color && io::stdout().is_terminal(),
        }
    }
}

/// Prints a report in the given style.
pub fn print(report: &Report, style: Style, out: &mut impl Write) -> io::Result<()> {
    if style.json {
        serde_json::to_writer_pretty(&mut *out, &report.json)?;
        return writeln!(out);
    }
    for block in &report.blocks {
        match block {
            Block::Table(table) => writeln!(out, "{}", render_table(table, style.color))?,
            Block::Text(text) if text.ends_with('\n') => write!(out, "{text}")?,
            Block::Text(text) => writeln!(out, "{text}")?,
            Block::Heading(text) if style.color => writeln!(out, "\x1b[1m{text}\x1b[0m")?,
            Block::Heading(text) => writeln!(out, "{text}")?,
        }
    }
    Ok(())
}

/// A table as text: aligned columns, no borders (easy to grep and to paste).
pub fn render_table(table: &Table, color: bool) -> String {
    let mut out = ComfyTable::new();
    out.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    if !color {
        out.force_no_tty();
    } else {
        out.enforce_styling();
    }
    out.set_header(table.headers.iter().map(|h| {
        let cell = TableCell::new(h.to_uppercase());
        if color {
            cell.add_attribute(comfy_table::Attribute::Bold)
        } else {
            cell
        }
    }));
    for row in &table.rows {
        out.add_row(row.iter().map(|cell| styled(cell, color)));
    }
    if table.rows.is_empty() {
        out.add_row(vec![TableCell::new("(none)")]);
    }
    // comfy-table pads every line to the table's width; people and diffs
    // prefer no trailing blanks.
    out.lines()
        .map(|line| line.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn styled(cell: &Cell, color: bool) -> TableCell {
    let out = TableCell::new(&cell.text);
    if !color {
        return out;
    }
    match cell.tone {
        Tone::Plain => out,
        Tone::Good => out.fg(Color::Green),
        Tone::Warn => out.fg(Color::Yellow),
        Tone::Bad => out.fg(Color::Red),
        Tone::Dim => out.fg(Color::DarkGrey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn printed(report: &Report, style: Style) -> String {
        let mut out = Vec::new();
        print(report, style, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tables_align_without_colour_or_trailing_blanks() {
        let mut table = Table::new(["service", "instances"]);
        table
            .row(["a-long-name", "1"])
            .row([Cell::new("b", Tone::Bad), Cell::from("12")]);
        let report = Report::new(json!([])).heading("Services").table(table);
        let text = printed(
            &report,
            Style {
                json: false,
                color: false,
            },
        );
        assert_eq!(
            text, "Services\n SERVICE      INSTANCES\n a-long-name  1\n b            12\n",
            "{text}"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn colour_only_when_asked() {
        let mut table = Table::new(["state"]);
        table.row([Cell::new("late", Tone::Bad)]);
        let report = Report::new(json!(null)).table(table);
        assert!(
            printed(
                &report,
                Style {
                    json: false,
                    color: true
                }
            )
            .contains("\x1b[")
        );
        assert!(
            !printed(
                &report,
                Style {
                    json: false,
                    color: false
                }
            )
            .contains("\x1b[")
        );
    }

    #[test]
    fn json_prints_the_document_only() {
        let report = Report::new(json!({"a": 1})).text("ignored");
        assert_eq!(
            printed(
                &report,
                Style {
                    json: true,
                    color: false
                }
            ),
            "{\n  \"a\": 1\n}\n"
        );
    }

    #[test]
    fn an_empty_table_says_so() {
        let text = render_table(&Table::new(["service"]), false);
        assert!(text.contains("(none)"), "{text}");
    }
}
