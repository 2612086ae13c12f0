"""The queue directory: Mailroot paths, envelope files, the lock and commit by rename."""
