"""Import handlers, one module per feed kind; this registry is the only way they are found."""

from handlers.contacts import ContactsImport
from handlers.subscribers import SubscribersImport

HANDLERS = {
    "contacts": ContactsImport,
    "subscribers": SubscribersImport,
}
