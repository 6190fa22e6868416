import SamepageModel

/// `samepage sharing`: the matrix of stable nodes between each pair of guests.
///
/// A stable node is one merged content (the kernel's `pages_shared` counts them). A cell
/// counts the stable nodes that have pages in both the guest of its row and the guest of its
/// column; the diagonal counts each guest's own. Nodes, not pages: a node with ten pages in
/// one guest and one in another counts once. Row labels are in the first column, under an
/// empty corner cell that keeps its width, so each column's label stands above its counts.
public struct SharingTable: Sendable {
    /// The matrix shown.
    public var matrix: SharingMatrix

    /// The table of `matrix`.
    public init(_ matrix: SharingMatrix) { self.matrix = matrix }

    /// A line saying what the cells count, then the table.
    public var text: String {
        let names = matrix.guests.map(\.name)
        let table = TextTable(
            columns: [.init("")] + names.map { .init($0, .right) },
            rows: zip(names, matrix.stableNodes).map { [$0] + $1.map(String.init) })
        return Self.legend + "\n" + table.text
    }

    /// What the cells count, printed above the table.
    public static let legend =
        "Stable nodes (merged contents) with pages in both guests; the diagonal: each guest's own."
}
