"""The Faust types every stage uses, with their parameters filled in once.

Stage topics carry raw ``bytes`` values under ``tenant_id:customer_id`` keys (``streams.app``);
tables hold JSON values under the same keys.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import faust
from faust.streams import Stream
from faust.types import EventT, StreamT, TableT

StageEvent: TypeAlias = EventT[Any]
StageStream: TypeAlias = StreamT[Any]
FaustStream: TypeAlias = Stream[Any]
StageTable: TypeAlias = faust.Table[str, Any]
AnyTable: TypeAlias = TableT[Any, Any]
