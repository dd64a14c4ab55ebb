"""Conversations in DynamoDB: one partition per session, one item per message.

A session's partition holds its header (sort key `session`) and its messages (sort keys
`msg#<position>`, zero-padded). The header counts the messages. A turn writes its messages at
the next positions in one transaction that also moves the count on, on condition that the
count is still the one it read: of two concurrent turns one wins, the other reads the new
count and goes after it. Nothing is overwritten, and the order is fixed at commit for every
reader. "session" sorts after "msg#", so one descending query returns the header and the
newest messages. Idempotency records live in the same table under `idem#<digest>` keys.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from chat_api.backoff import jittered_backoff
from chat_api.exceptions import IdempotencyKeyInUse, SessionNotFound, StoreUnavailable
from chat_api.store.base import (
    ClaimedResponse,
    Conversation,
    IdempotencyClaim,
    IdempotencyRecord,
    Message,
    Role,
    Session,
    holds_key,
    is_live,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
        WriteRequestTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]

logger = logging.getLogger(__name__)

PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "expires_at"
HEADER_SORT_KEY = "session"
MESSAGE_PREFIX = "msg#"
IDEMPOTENCY_PREFIX = "idem#"
IDEMPOTENCY_SORT_KEY = "idempotency"
# Turns that lose the race for a position retry after the winner; transactions that DynamoDB
# cancels for a conflict with another one in flight are retried too.
WRITE_ATTEMPTS = 8
BATCH_WRITE_LIMIT = 25


class DynamoDBSessionStore:
    """The SessionStore on a DynamoDB table with keys `pk` and `sk` and TTL on `expires_at`."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def load(
        self, session_id: str, owner: str, now: float, newest: int | None = None
    ) -> Conversation | None:
        """The conversation (only its `newest` messages if given); None unless live and owned."""
        if newest is None:
            items = list(self._query_partition(session_id))
        else:
            with _store_errors("Query"):
                items = self._client.query(
                    TableName=self._table,
                    KeyConditionExpression="pk = :pk",
                    ExpressionAttributeValues={":pk": {"S": session_id}},
                    ScanIndexForward=False,
                    Limit=newest + 1,
                    ConsistentRead=True,
                )["Items"]
        header = next((item for item in items if item[SORT_KEY]["S"] == HEADER_SORT_KEY), None)
        session = _live_session(session_id, header, owner, now)
        if session is None:
            return None
        messages = sorted(
            (item for item in items if item[SORT_KEY]["S"].startswith(MESSAGE_PREFIX)),
            key=lambda item: item[SORT_KEY]["S"],
        )
        return Conversation(session=session, messages=[_message_from(item) for item in messages])

    def append(
        self,
        session: Session,
        messages: Sequence[Message],
        *,
        now: float,
        create: bool,
        claimed_response: ClaimedResponse | None = None,
    ) -> None:
        """Add messages after every stored one, together and atomically (see SessionStore)."""
        position = None if create else self._message_count(session, now, self._header(session.id))
        for attempt in range(WRITE_ATTEMPTS):
            writes = [self._header_write(session, len(messages), position)]
            writes += self._message_writes(session, messages, position or 0)
            if claimed_response is not None:
                writes.append(self._complete_claim(claimed_response))
            reasons = self._transact(writes)
            if reasons is None:
                return
            if reasons[0].get("Code") == "ConditionalCheckFailed":
                # Another turn took the position first (or the session is gone): go after it.
                if create:
                    raise SessionNotFound
                position = self._message_count(session, now, reasons[0].get("Item"))
            elif (
                claimed_response is not None and reasons[-1].get("Code") == "ConditionalCheckFailed"
            ):
                raise IdempotencyKeyInUse
            elif not any(reason.get("Code") == "TransactionConflict" for reason in reasons):
                logger.warning("DynamoDB cancelled a turn: %s", [r.get("Code") for r in reasons])
                raise StoreUnavailable("DynamoDB refused the turn's write.")
            _back_off(attempt)
        raise StoreUnavailable("Too many concurrent turns on one session.")

    def delete(self, session_id: str, owner: str, now: float) -> bool:
        """Remove the session and its messages; False unless it was live and owned."""
        if _live_session(session_id, self._header(session_id), owner, now) is None:
            return False
        # Messages first, header last: a delete that fails half-way leaves the session
        # readable, and repeating the request finishes it.
        keys = [
            {PARTITION_KEY: item[PARTITION_KEY], SORT_KEY: item[SORT_KEY]}
            for item in self._query_partition(session_id, keys_only=True)
            if item[SORT_KEY]["S"] != HEADER_SORT_KEY
        ]
        for start in range(0, len(keys), BATCH_WRITE_LIMIT):
            self._batch_delete(keys[start : start + BATCH_WRITE_LIMIT])
        with _store_errors("DeleteItem"):
            self._client.delete_item(TableName=self._table, Key=_header_key(session_id))
        return True

    def claim(self, claim: IdempotencyClaim) -> IdempotencyRecord | None:
        """Take the key for this request (None), or return the live record that holds it."""
        item: Item = {
            **_idempotency_key(claim.record_id),
            "fingerprint": {"S": claim.fingerprint},
            "token": {"S": claim.token},
            "claimed_at": {"N": repr(claim.claimed_at)},
            TTL_ATTRIBUTE: {"N": str(_ttl(claim.expires_at))},
        }
        for attempt in range(WRITE_ATTEMPTS):
            with _store_errors("GetItem"):
                found = self._client.get_item(
                    TableName=self._table,
                    Key=_idempotency_key(claim.record_id),
                    ConsistentRead=True,
                ).get("Item")
            held = _record_from(found) if found else None
            if held is not None and holds_key(held, claim.claimed_at):
                return held
            # Take the key only if the record is still the one read: absent, or the same token.
            condition: dict[str, Any] = (
                {"ConditionExpression": "attribute_not_exists(pk)"}
                if held is None
                else {
                    "ConditionExpression": "#token = :token",
                    "ExpressionAttributeNames": {"#token": "token"},
                    "ExpressionAttributeValues": {":token": {"S": held.token}},
                }
            )
            try:
                with _store_errors("PutItem", passing="ConditionalCheckFailedException"):
                    self._client.put_item(TableName=self._table, Item=item, **condition)
            except ClientError:
                _back_off(attempt)  # another request took it first: read what it holds
                continue
            return None
        raise StoreUnavailable("Too many requests raced for one idempotency key.")

    def release(self, claim: IdempotencyClaim) -> None:
        """Give the key up (the request failed), unless another request has taken it over."""
        try:
            with _store_errors("DeleteItem", passing="ConditionalCheckFailedException"):
                self._client.delete_item(
                    TableName=self._table,
                    Key=_idempotency_key(claim.record_id),
                    ConditionExpression="#token = :token",
                    ExpressionAttributeNames={"#token": "token"},
                    ExpressionAttributeValues={":token": {"S": claim.token}},
                )
        except ClientError:
            pass  # another request took the key over: it is theirs to keep

    def _header(self, session_id: str) -> Item | None:
        with _store_errors("GetItem"):
            return self._client.get_item(
                TableName=self._table, Key=_header_key(session_id), ConsistentRead=True
            ).get("Item")

    def _message_count(self, session: Session, now: float, header: Item | None) -> int:
        """How many messages the header counts; SessionNotFound unless the session is live."""
        if header is None or _live_session(session.id, header, session.owner, now) is None:
            raise SessionNotFound
        return int(header["message_count"]["N"])

    def _header_write(
        self, session: Session, added: int, position: int | None
    ) -> TransactWriteItemTypeDef:
        """Create the header (position None), or move its count on if it is still `position`.

        The owner and expiry of a header never change, and ids are never reused: a count that
        is still the one read means the header is the one `is_live` accepted.
        """
        if position is None:
            item: Item = {
                **_header_key(session.id),
                "owner": {"S": session.owner},
                "created_at": {"N": repr(session.created_at)},
                "message_count": {"N": str(added)},
                TTL_ATTRIBUTE: {"N": str(_ttl(session.expires_at))},
            }
            return {
                "Put": {
                    "TableName": self._table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        return {
            "Update": {
                "TableName": self._table,
                "Key": _header_key(session.id),
                "UpdateExpression": "SET message_count = :next",
                "ConditionExpression": "message_count = :count",
                "ExpressionAttributeValues": {
                    ":count": {"N": str(position)},
                    ":next": {"N": str(position + added)},
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _message_writes(
        self, session: Session, messages: Sequence[Message], first: int
    ) -> list[TransactWriteItemTypeDef]:
        expires = str(_ttl(session.expires_at))
        writes: list[TransactWriteItemTypeDef] = []
        for position, message in enumerate(messages, start=first):
            item: Item = {
                PARTITION_KEY: {"S": session.id},
                SORT_KEY: {"S": f"{MESSAGE_PREFIX}{position:010d}"},
                "role": {"S": message.role},
                "content": {"S": message.content},
                "created_at": {"N": repr(message.created_at)},
                # Messages expire with their session: DynamoDB's TTL removes them all.
                TTL_ATTRIBUTE: {"N": expires},
            }
            writes.append({"Put": {"TableName": self._table, "Item": item}})
        return writes

    def _complete_claim(self, claimed: ClaimedResponse) -> TransactWriteItemTypeDef:
        return {
            "Update": {
                "TableName": self._table,
                "Key": _idempotency_key(claimed.claim.record_id),
                "UpdateExpression": "SET #response = :response",
                "ConditionExpression": "#token = :token",
                "ExpressionAttributeNames": {"#response": "response", "#token": "token"},
                "ExpressionAttributeValues": {
                    ":response": {"S": claimed.response},
                    ":token": {"S": claimed.claim.token},
                },
            }
        }

    def _transact(self, writes: list[TransactWriteItemTypeDef]) -> list[dict[str, Any]] | None:
        """Run the transaction: None if it committed, else why each write was cancelled."""
        try:
            with _store_errors("TransactWriteItems", passing="TransactionCanceledException"):
                self._client.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            return cast("list[dict[str, Any]]", exc.response.get("CancellationReasons") or [{}])
        return None

    def _query_partition(self, partition: str, *, keys_only: bool = False) -> Iterator[Item]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": partition}},
            "ConsistentRead": True,
        }
        if keys_only:
            request["ProjectionExpression"] = "pk, sk"
        while True:
            with _store_errors("Query"):
                page = self._client.query(**request)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _batch_delete(self, keys: list[Item]) -> None:
        requests: list[WriteRequestTypeDef] = [{"DeleteRequest": {"Key": key}} for key in keys]
        for attempt in range(WRITE_ATTEMPTS):
            with _store_errors("BatchWriteItem"):
                unprocessed = self._client.batch_write_item(RequestItems={self._table: requests})[
                    "UnprocessedItems"
                ]
            requests = cast("list[WriteRequestTypeDef]", unprocessed.get(self._table, []))
            if not requests:
                return
            _back_off(attempt)
        raise StoreUnavailable("DynamoDB did not delete every message.")


@contextmanager
def _store_errors(operation: str, passing: str | None = None) -> Iterator[None]:
    """Turn DynamoDB failures into StoreUnavailable; let the `passing` error code through."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == passing:
            raise
        logger.warning("DynamoDB %s failed: %s", operation, code)
        raise StoreUnavailable(f"DynamoDB {operation} failed.") from exc
    except BotoCoreError as exc:
        logger.warning("DynamoDB %s failed: %s", operation, type(exc).__name__)
        raise StoreUnavailable(f"DynamoDB {operation} failed.") from exc


def _back_off(attempt: int) -> None:
    """Capped so that all attempts together stay well under a second."""
    time.sleep(jittered_backoff(attempt, first=0.005, cap=0.1))


def _header_key(session_id: str) -> Item:
    return {PARTITION_KEY: {"S": session_id}, SORT_KEY: {"S": HEADER_SORT_KEY}}


def _idempotency_key(record_id: str) -> Item:
    return {
        PARTITION_KEY: {"S": IDEMPOTENCY_PREFIX + record_id},
        SORT_KEY: {"S": IDEMPOTENCY_SORT_KEY},
    }


def _live_session(session_id: str, header: Item | None, owner: str, now: float) -> Session | None:
    """The header's session if `is_live` accepts it for `owner`, else None."""
    if not header:
        return None
    session = Session(
        id=session_id,
        owner=header["owner"]["S"],
        created_at=float(header["created_at"]["N"]),
        expires_at=float(header[TTL_ATTRIBUTE]["N"]),
    )
    return session if is_live(session, owner, now) else None


def _record_from(item: Item) -> IdempotencyRecord:
    response = item.get("response")
    return IdempotencyRecord(
        fingerprint=item["fingerprint"]["S"],
        response=response["S"] if response else None,
        token=item["token"]["S"],
        claimed_at=float(item["claimed_at"]["N"]),
        expires_at=float(item[TTL_ATTRIBUTE]["N"]),
    )


def _ttl(expires_at: float) -> int:
    """DynamoDB's TTL reads whole epoch seconds."""
    return math.ceil(expires_at)


def _message_from(item: Item) -> Message:
    return Message(
        role=cast("Role", item["role"]["S"]),
        content=item["content"]["S"],
        created_at=float(item["created_at"]["N"]),
    )
