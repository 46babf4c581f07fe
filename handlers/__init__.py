"""Feed kinds, one module per kind. `KINDS` is built from this one list of classes and is
the only way the daemon and the config find them."""

from handlers.activity import ActivityImport
from handlers.contacts import ContactsImport
from handlers.contacts_export import ContactsExport
from handlers.conversations import ConversationsExport
from handlers.engagement import EngagementExport
from handlers.messages import MessagesImport
from handlers.notes_export import NotesExport
from handlers.subscribers import SubscribersImport

IMPORT_KINDS = (ContactsImport, SubscribersImport, ActivityImport, MessagesImport)
EXPORT_KINDS = (ConversationsExport, EngagementExport, ContactsExport, NotesExport)
KINDS = {kind.kind: kind for kind in IMPORT_KINDS + EXPORT_KINDS}
