"""What every run shares, import or export: its lifecycle (context, record, recap hand-off), companion file names, and spreadsheet-safe cells."""
