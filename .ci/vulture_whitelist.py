"""Names vulture reports as unused that are used, by a framework, a library or the tests; each
group says by whom. `vulture daemon handlers .ci/vulture_whitelist.py` in .ci/run must report
nothing: anything new it finds is dead code, or belongs here with its reason."""

# ruff: noqa: B018, F821

# pyftpdlib calls these on its handlers, authorizers and file systems (daemon/dropzone/ftp_server.py).
_.validate_authentication, _.get_home_dir, _.has_user, _.has_perm, _.get_perms, _.get_msg_login, _.get_msg_quit
_.impersonate_user, _.terminate_impersonation, _.ftp2fs, _.validpath, _.chdir, _.mkstemp, _.listdirinfo, _.readlink
_.secure_connection, _.use_sendfile, _.attempted_logins, _._resp, _._ssl_want_read, _._ssl_want_write
whence, dir, perm  # parameters of the interfaces above

# paramiko calls these on its server interfaces and SFTP server (daemon/dropzone/sftp_server.py).
_.check_auth_none, _.check_auth_password, _.check_auth_publickey, _.check_channel_request, _.get_allowed_auths
_.session_started, _.session_ended, _.list_folder, _.posix_rename, _.chattr, _.canonicalize, _.symlink
_._send_server_version, _._write_all, _.read_ready
chanid, target_path  # parameters of the interfaces above
_.auth_timeout, _.banner_timeout, _.handshake_timeout, _.channel_timeout  # read by paramiko's Transport

# pyOpenSSL's SSL.Connection interface, as pyftpdlib calls it (daemon/dropzone/data_tls.py).
_.set_accept_state, _.get_shutdown, _.set_shutdown
_.num_tickets  # read by the ssl module

# watchdog calls these on its event handlers (daemon/feeds/arrivals.py).
_.on_created, _.on_closed, _.on_moved, _.on_deleted

# http.server calls these (daemon/metrics.py); structlog passes processors method_name.
_.daemon_threads, _.do_HEAD, _.do_POST, _.do_PUT, _.do_DELETE, _.do_PATCH, _.do_OPTIONS, _.log_message
format, method_name

# smtplib reads `user` during AUTH (daemon/notify/smtp.py); sqlite3 reads `row_factory`.
_.user, _.row_factory

# A column of the outbox, kept in its record; read by `dropd mail --pending --json`'s callers.
_.sent_at

# Used by the tests: the reference kinds of bb3851f read rows with Row.change; the ban list's
# memory is looked at by tests/daemon/dropzone/test_admission.py.
_.change, _.remembered

# The recap templates read these fields (daemon/notify/templates/recap.txt, recap.html).
_.first_rows

# daemon/cli.py calls the handlers of daemon/commands.py by name (_command("check_config")).
check_config, partner_records, migrate_store

# uvicorn's serve loop reads should_exit (daemon/web/server.py sets it to stop the console).
_.should_exit

# paramiko's transport reads a message's seqno (daemon/dropzone/chacha20_poly1305.py sets it, as paramiko does).
_.seqno
