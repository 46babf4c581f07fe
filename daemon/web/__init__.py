"""The read-only web console for support staff: runs, errors and partners, in a browser.

`app.py` builds the Starlette application from `views.py` (what each page shows, as data),
`auth.py` (staff logins and sessions), `charts.py` and `formatting.py`; `server.py` serves it
with uvicorn in a thread of the daemon.
"""
