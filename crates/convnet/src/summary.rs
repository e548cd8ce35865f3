//! `Model::summary`: the Keras 2 table, byte for byte (from the built
//! layers alone, so this file needs nothing of `Model`).
//!
//! Keras 2's `print_summary` for sequential models uses a 65-column line with
//! columns starting at 0, 29 and 55 (`positions = [.45, .85, 1.]`). Each field
//! is appended, the line cut at the column's end and padded with spaces to it;
//! before the next field the last character is replaced by a space. So a long
//! `name (Type)` is truncated to 28 characters plus a space
//! (`max_pooling2d_1 (MaxPooling2 `) and every row is exactly 65 columns wide.

use crate::built::BuiltLayer;
use crate::layers::fmt_dims;

const LINE: usize = 65;
const POSITIONS: [usize; 3] = [29, 55, 65];

/// One row as Keras's `print_row` builds it (character-wise, like Python slicing).
fn row(fields: [&str; 3]) -> String {
    let mut line: Vec<char> = Vec::with_capacity(LINE);
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.pop();
            line.push(' ');
        }
        line.extend(field.chars());
        line.truncate(POSITIONS[i]);
        line.resize(POSITIONS[i], ' ');
    }
    line.into_iter().collect()
}

/// `93322` as `93,322` (Python's `'{:,}'`).
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The table of a model named `name` with these layers and `total` parameters.
pub(crate) fn summary(name: &str, layers: &[BuiltLayer], total: usize) -> String {
    let mut out = String::new();
    let mut push = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    push(&format!("Model: \"{name}\""));
    push(&"_".repeat(LINE));
    push(&row(["Layer (type)", "Output Shape", "Param #"]));
    push(&"=".repeat(LINE));
    for (i, l) in layers.iter().enumerate() {
        let name = format!("{} ({})", l.name, l.layer.class_name());
        let shape = format!("(None, {}", fmt_dims(&l.output).trim_start_matches('('));
        let shape = if l.output.len() == 1 { shape.replace(",)", ")") } else { shape };
        push(&row([&name, &shape, &l.param_count.to_string()]));
        push(&if i + 1 == layers.len() { "=" } else { "_" }.repeat(LINE));
    }
    push(&format!("Total params: {}", thousands(total)));
    // Keras 2 counts a frozen layer's weights (`trainable = False`) as non-trainable.
    let trainable: usize = layers.iter().filter(|l| l.trainable).map(|l| l.param_count).sum();
    push(&format!("Trainable params: {}", thousands(trainable)));
    push(&format!("Non-trainable params: {}", thousands(total.saturating_sub(trainable))));
    push(&"_".repeat(LINE));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_65_columns_and_truncate_like_keras() {
        let r = row(["max_pooling2d_1 (MaxPooling2D)", "(None, 5, 5, 64)", "0"]);
        assert_eq!(r.len(), 65);
        assert!(r.starts_with("max_pooling2d_1 (MaxPooling2 (None, 5, 5, 64)          0"));
        let r = row(["max_pooling2d (MaxPooling2D)", "(None, 13, 13, 32)", "0"]);
        assert!(r.starts_with("max_pooling2d (MaxPooling2D) (None, 13, 13, 32)        0"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(93322), "93,322");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
