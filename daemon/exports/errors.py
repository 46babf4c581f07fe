"""How a delivery fails: the step that failed, what happened, and whether trying later can help."""


class PushError(Exception):
    def __init__(self, step: str, message: str, transient: bool = False):
        self.step = step
        """dns, tcp, host-key, tls, auth, sftp, directory, permission, upload, verify or rename."""
        self.message = message
        self.transient = transient
        super().__init__(f"{step}: {message}")
