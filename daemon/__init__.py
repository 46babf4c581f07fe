"""dropd: a partner file-exchange daemon (SFTP/FTPS drop zone, feed imports, exports)."""
