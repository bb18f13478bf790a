"""trio-kad: a Kademlia distributed hash table on Trio, speaking CBOR over TCP.

Start here: ``async with open_dht(bootstrap=["host:port"]) as dht``, then
``await dht.set(key, value)`` and ``await dht.get(key)``.
"""

from ._api import Dht, DhtStatistics
from ._config import Config
from ._errors import (
    BootstrapError,
    CasMismatch,
    DataDirError,
    DhtError,
    PeerMisbehaved,
    ProtocolError,
    QuorumError,
    RemoteError,
    StaleSequence,
    StoreError,
    TransportError,
)
from ._memory import MemoryTransport
from ._memory_net import MemoryNetwork
from ._node import LookupReport
from ._open import open_dht
from ._providers import Provider
from ._signed import SignedRecord, SigningKey
from ._tcp import TcpTransport
from ._transport import Transport, TransportStatistics

__version__ = "0.1.0.dev0"

__all__ = [
    "BootstrapError",
    "CasMismatch",
    "Config",
    "DataDirError",
    "Dht",
    "DhtError",
    "DhtStatistics",
    "LookupReport",
    "MemoryNetwork",
    "MemoryTransport",
    "PeerMisbehaved",
    "ProtocolError",
    "Provider",
    "QuorumError",
    "RemoteError",
    "SignedRecord",
    "SigningKey",
    "StaleSequence",
    "StoreError",
    "TcpTransport",
    "Transport",
    "TransportError",
    "TransportStatistics",
    "__version__",
    "open_dht",
]
