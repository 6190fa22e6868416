/// A table for the terminal: a header row, a rule, then the rows, each column as wide as its
/// widest cell, two spaces between columns.
///
/// Text columns are padded on the right and number columns on the left, so that figures line
/// up by their last digit. Only the end of a line is trimmed: a cell that is empty at the start
/// of a row (the corner cell of a matrix) keeps its width, and every label stays above its
/// column.
public struct TextTable: Sendable, Equatable {
    /// How a column's cells line up.
    public enum Alignment: Sendable, Equatable {
        /// Padded on the right: names, states, words.
        case left
        /// Padded on the left: counts and sizes.
        case right
    }

    /// A column: its label and how its cells line up.
    public struct Column: Sendable, Equatable {
        /// The label in the header row.
        public var title: String
        /// How the column's cells (and its label) line up.
        public var alignment: Alignment

        /// A column labelled `title`.
        public init(_ title: String, _ alignment: Alignment = .left) {
            self.title = title
            self.alignment = alignment
        }
    }

    /// The columns, left to right.
    public var columns: [Column]
    /// The cells, one array per row, as many as there are columns.
    public var rows: [[String]]

    /// A table of `rows` under `columns`; every row must have a cell for each column.
    public init(columns: [Column], rows: [[String]]) {
        precondition(rows.allSatisfy { $0.count == columns.count }, "a row without a cell for each column")
        self.columns = columns
        self.rows = rows
    }

    /// The header, the rule and the rows, joined by newlines (no newline at the end).
    ///
    /// - Complexity: O(cells).
    public var text: String {
        let widths = columns.indices.map { i in
            rows.reduce(columns[i].title.count) { max($0, $1[i].count) }
        }
        func line(_ cells: [String]) -> String {
            var text = ""
            for (i, cell) in cells.enumerated() {
                if i > 0 { text += "  " }
                let padding = String(repeating: " ", count: widths[i] - cell.count)
                text += columns[i].alignment == .left ? cell + padding : padding + cell
            }
            while text.last == " " { text.removeLast() }
            return text
        }
        let rule = String(repeating: "-", count: widths.reduce(0, +) + 2 * max(0, widths.count - 1))
        return ([line(columns.map(\.title)), rule] + rows.map(line)).joined(separator: "\n")
    }
}
