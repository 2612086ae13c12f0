"""Table models of the result pane: one QAbstractTableModel per list, updated by keyed row diffs."""
