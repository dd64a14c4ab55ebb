"""Conversations in DynamoDB: one partition per session, one item per message.

A session's partition holds its header (sort key `session`) and its messages (sort keys
`msg#<position>`, zero-padded). The header hands out positions: a turn first adds its
message count to the header's counter in one atomic `UpdateItem` (`ADD`), which gives it
positions no other turn can get, however many arrive at once; then it writes its messages
there in one transaction, each on condition that the item does not exist yet, so nothing is
ever overwritten. A turn that fails after taking its positions leaves a gap, which readers
never notice (they read what exists, in order). "session" sorts after "msg#", so one
descending query returns the header and the newest messages. Idempotency records live in
the same table under `idem#<digest>` keys; the header lists those of its turns. Token
budgets too: one item per caller and period under `budget#<caller>#<period>`, changed only by
single `UpdateItem`s, the reservation conditional on its `committed` counter.
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
from chat_api.store import rules
from chat_api.store.base import (
    BudgetTally,
    Conversation,
    IdempotencyRecord,
    Message,
    MessagePage,
    OwnedResponse,
    Session,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
        UpdateTypeDef,
        WriteRequestTypeDef,
    )

    from chat_api.store.base import (
        BudgetAccount,
        ClaimedResponse,
        IdempotencyClaim,
        NewMessages,
        Role,
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
BUDGET_PREFIX = "budget#"
BUDGET_SORT_KEY = "budget"
# The header's string set of its turns' idempotency record ids, deleted with the session.
RECORDS_ATTRIBUTE = "idempotency_records"
# Who created each response stored at OpenAI: `resp#<id>` items, expiring by TTL.
RESPONSE_PREFIX = "resp#"
RESPONSE_SORT_KEY = "response"
POSITION_DIGITS = 10
# Transactions that DynamoDB cancels for a conflict with another one in flight are retried.
WRITE_ATTEMPTS = 8
BATCH_WRITE_LIMIT = 25


class DynamoDBSessionStore:
    """The SessionStore (and BudgetStore) on a table with keys `pk`, `sk` and TTL `expires_at`."""

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

    def append(self, added: NewMessages, now: float) -> None:
        """Add the messages after every stored one, together and atomically (see SessionStore)."""
        session, messages, claimed_response = added.session, added.messages, added.claimed_response
        record = None if claimed_response is None else claimed_response.claim.record_id
        writes: list[TransactWriteItemTypeDef] = []
        if added.create:
            writes.append(self._new_header(session, len(messages), record))
            first = 0
        else:
            if _live_session(session.id, self._header(session.id), session.owner, now) is None:
                raise SessionNotFound
            first = self._take_positions(session.id, len(messages), record)
        writes += self._message_writes(session, messages, first)
        if claimed_response is not None:
            writes.append({"Update": self._complete_claim(claimed_response, session)})
        for attempt in range(WRITE_ATTEMPTS):
            reasons = self._transact(writes)
            if reasons is None:
                return
            codes = [reason.get("Code") for reason in reasons]
            if claimed_response is not None and codes[-1] == "ConditionalCheckFailed":
                raise IdempotencyKeyInUse
            if "TransactionConflict" not in codes:
                # A new header or a message position already taken: never overwritten.
                logger.warning("DynamoDB cancelled a turn: %s", codes)
                raise StoreUnavailable("DynamoDB refused the turn's write.")
            _back_off(attempt)
        raise StoreUnavailable("DynamoDB kept cancelling the turn's write.")

    def delete(self, session_id: str, owner: str, now: float) -> bool:
        """Remove the session, its messages and its turns' idempotency records."""
        header = self._header(session_id)
        if _live_session(session_id, header, owner, now) is None or header is None:
            return False
        # Messages first, header last: a delete that fails half-way leaves the session
        # readable, and repeating the request finishes it.
        keys = [
            {PARTITION_KEY: item[PARTITION_KEY], SORT_KEY: item[SORT_KEY]}
            for item in self._query_partition(session_id, keys_only=True)
            if item[SORT_KEY]["S"] != HEADER_SORT_KEY
        ]
        keys += [
            _idempotency_key(record) for record in header.get(RECORDS_ATTRIBUTE, {}).get("SS", [])
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
            if held is not None and rules.holds_key(held, claim.claimed_at):
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

    def complete(self, claimed: ClaimedResponse) -> None:
        """Store the answer of a request tied to no session with its claim (see SessionStore)."""
        try:
            with _store_errors("UpdateItem", passing="ConditionalCheckFailedException"):
                self._client.update_item(**self._complete_claim(claimed, None))
        except ClientError as exc:
            raise IdempotencyKeyInUse from exc

    def record_response(self, response: OwnedResponse, now: float) -> None:
        """Remember who created a stored response (written once per id); TTL drops old ones."""
        del now  # DynamoDB's TTL removes expired records
        item: Item = {
            **_response_key(response.id),
            "owner": {"S": response.owner},
            TTL_ATTRIBUTE: {"N": str(_ttl(response.expires_at))},
        }
        try:
            with _store_errors("PutItem", passing="ConditionalCheckFailedException"):
                self._client.put_item(
                    TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)"
                )
        except ClientError:
            pass  # recorded already: the first owner stays

    def response_owner(self, response_id: str) -> OwnedResponse | None:
        """The record of a stored response, if the service created it."""
        with _store_errors("GetItem"):
            item = self._client.get_item(
                TableName=self._table, Key=_response_key(response_id), ConsistentRead=True
            ).get("Item")
        if not item:
            return None
        return OwnedResponse(
            id=response_id, owner=item["owner"]["S"], expires_at=float(item[TTL_ATTRIBUTE]["N"])
        )

    def forget_response(self, response_id: str) -> None:
        """Drop the record (the response was deleted at OpenAI)."""
        with _store_errors("DeleteItem"):
            self._client.delete_item(TableName=self._table, Key=_response_key(response_id))

    def reserve(self, account: BudgetAccount, amount: int, ceiling: int) -> bool:
        """Add `amount` to the account if committed <= `ceiling` (see BudgetStore).

        One conditional `UpdateItem`: DynamoDB checks the condition and applies the update
        atomically, so concurrent reservations can never together pass the budget. The rule
        is `fits` (committed <= ceiling), written here as DynamoDB's condition.
        """
        try:
            with _store_errors("UpdateItem", passing="ConditionalCheckFailedException"):
                self._client.update_item(
                    TableName=self._table,
                    Key=_budget_key(account),
                    UpdateExpression=(
                        "ADD #committed :amount, #reserved :amount SET expires_at = :expires"
                    ),
                    ConditionExpression=(
                        "attribute_not_exists(#committed) OR #committed <= :ceiling"
                    ),
                    ExpressionAttributeNames={"#committed": "committed", "#reserved": "reserved"},
                    ExpressionAttributeValues={
                        ":amount": {"N": str(amount)},
                        ":ceiling": {"N": str(ceiling)},
                        ":expires": {"N": str(_ttl(account.expires_at))},
                    },
                )
        except ClientError:
            return False
        return True

    def settle(self, account: BudgetAccount, reserved: int, actual: int) -> None:
        """Turn a reservation into `actual` spent tokens (see BudgetStore)."""
        with _store_errors("UpdateItem"):
            self._client.update_item(
                TableName=self._table,
                Key=_budget_key(account),
                UpdateExpression="ADD #committed :delta, #reserved :release, #spent :actual",
                ExpressionAttributeNames={
                    "#committed": "committed",
                    "#reserved": "reserved",
                    "#spent": "spent",
                },
                ExpressionAttributeValues={
                    ":delta": {"N": str(actual - reserved)},
                    ":release": {"N": str(-reserved)},
                    ":actual": {"N": str(actual)},
                },
            )

    def tally(self, account: BudgetAccount) -> BudgetTally:
        """The account's spent and reserved tokens (see BudgetStore)."""
        with _store_errors("GetItem"):
            item = self._client.get_item(
                TableName=self._table, Key=_budget_key(account), ConsistentRead=True
            ).get("Item", {})
        return BudgetTally(
            spent=int(item.get("spent", {}).get("N", "0")),
            reserved=int(item.get("reserved", {}).get("N", "0")),
        )

    def _header(self, session_id: str) -> Item | None:
        with _store_errors("GetItem"):
            return self._client.get_item(
                TableName=self._table, Key=_header_key(session_id), ConsistentRead=True
            ).get("Item")

    def page(
        self, session_id: str, owner: str, now: float, *, after: int | None, limit: int
    ) -> MessagePage | None:
        """A page of messages: up to `limit` after position `after` (see SessionStore)."""
        session = _live_session(session_id, self._header(session_id), owner, now)
        if session is None:
            return None
        start = 0 if after is None else after + 1
        with _store_errors("Query"):
            items = self._client.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
                ExpressionAttributeValues={
                    ":pk": {"S": session_id},
                    ":first": {"S": _message_sort_key(start)},
                    ":last": {"S": _message_sort_key(10**POSITION_DIGITS - 1)},
                },
                Limit=limit + 1,
                ConsistentRead=True,
            )["Items"]
        kept = items[:limit]
        return MessagePage(
            session=session,
            messages=[_message_from(item) for item in kept],
            positions=[int(item[SORT_KEY]["S"].removeprefix(MESSAGE_PREFIX)) for item in kept],
            more=len(items) > limit,
        )

    def _new_header(
        self, session: Session, added: int, record: str | None
    ) -> TransactWriteItemTypeDef:
        """The header of a new session, counting its first `added` messages."""
        item: Item = {
            **_header_key(session.id),
            "owner": {"S": session.owner},
            "created_at": {"N": repr(session.created_at)},
            "message_count": {"N": str(added)},
            TTL_ATTRIBUTE: {"N": str(_ttl(session.expires_at))},
        }
        if record is not None:
            item[RECORDS_ATTRIBUTE] = {"SS": [record]}
        return {
            "Put": {
                "TableName": self._table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _take_positions(self, session_id: str, added: int, record: str | None) -> int:
        """The first of `added` positions the header hands this turn alone (atomic `ADD`).

        The owner and expiry of a header never change and ids are never reused, so the header
        that `is_live` accepted is the one counted on, if it still exists.
        """
        update = "ADD message_count :added"
        values: dict[str, AttributeValueTypeDef] = {":added": {"N": str(added)}}
        if record is not None:
            update += f", {RECORDS_ATTRIBUTE} :record"
            values[":record"] = {"SS": [record]}
        try:
            with _store_errors("UpdateItem", passing="ConditionalCheckFailedException"):
                counted = self._client.update_item(
                    TableName=self._table,
                    Key=_header_key(session_id),
                    UpdateExpression=update,
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues=values,
                    ReturnValues="UPDATED_NEW",
                )
        except ClientError as exc:
            raise SessionNotFound from exc  # deleted since it was read
        return int(counted["Attributes"]["message_count"]["N"]) - added

    def _message_writes(
        self, session: Session, messages: Sequence[Message], first: int
    ) -> list[TransactWriteItemTypeDef]:
        expires = str(_ttl(session.expires_at))
        writes: list[TransactWriteItemTypeDef] = []
        for position, message in enumerate(messages, start=first):
            item: Item = {
                PARTITION_KEY: {"S": session.id},
                SORT_KEY: {"S": _message_sort_key(position)},
                "role": {"S": message.role},
                "content": {"S": message.content},
                "created_at": {"N": repr(message.created_at)},
                # Messages expire with their session: DynamoDB's TTL removes them all.
                TTL_ATTRIBUTE: {"N": expires},
            }
            writes.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": item,
                        # A position is written once: a bug elsewhere cannot overwrite a message.
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        return writes

    def _complete_claim(self, claimed: ClaimedResponse, session: Session | None) -> UpdateTypeDef:
        """The update that stores the claim's answer, only while the claim holds the key."""
        expires = _ttl(rules.answer_expiry(claimed.claim, session))
        return {
            "TableName": self._table,
            "Key": _idempotency_key(claimed.claim.record_id),
            "UpdateExpression": "SET #response = :response, expires_at = :expires",
            "ConditionExpression": "#token = :token",
            "ExpressionAttributeNames": {"#response": "response", "#token": "token"},
            "ExpressionAttributeValues": {
                ":response": {"S": claimed.response},
                ":token": {"S": claimed.claim.token},
                ":expires": {"N": str(expires)},
            },
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


def _message_sort_key(position: int) -> str:
    return f"{MESSAGE_PREFIX}{position:0{POSITION_DIGITS}d}"


def _header_key(session_id: str) -> Item:
    return {PARTITION_KEY: {"S": session_id}, SORT_KEY: {"S": HEADER_SORT_KEY}}


def _idempotency_key(record_id: str) -> Item:
    return {
        PARTITION_KEY: {"S": IDEMPOTENCY_PREFIX + record_id},
        SORT_KEY: {"S": IDEMPOTENCY_SORT_KEY},
    }


def _response_key(response_id: str) -> Item:
    return {PARTITION_KEY: {"S": RESPONSE_PREFIX + response_id}, SORT_KEY: {"S": RESPONSE_SORT_KEY}}


def _budget_key(account: BudgetAccount) -> Item:
    return {
        PARTITION_KEY: {"S": f"{BUDGET_PREFIX}{account.caller}#{account.period}"},
        SORT_KEY: {"S": BUDGET_SORT_KEY},
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
    return session if rules.is_live(session, owner, now) else None


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
