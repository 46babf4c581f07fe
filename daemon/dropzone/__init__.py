"""The drop zone: SFTP and FTPS servers, partner sessions, logins and bans, atomic uploads."""
