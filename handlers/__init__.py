"""Import handlers, one module per feed kind; this registry is the only way they are found."""

from handlers.activity import ActivityImport
from handlers.contacts import ContactsImport
from handlers.messages import MessagesImport
from handlers.subscribers import SubscribersImport

HANDLERS = {
    "contacts": ContactsImport,
    "subscribers": SubscribersImport,
    "activity": ActivityImport,
    "messages": MessagesImport,
}
