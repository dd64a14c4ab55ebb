"""Dependencies as `Annotated` aliases: routes declare what they need, tests override it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from openai import AsyncOpenAI

from chat_api.clients import get_openai_client
from chat_api.config import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]
OpenAIDep = Annotated[AsyncOpenAI, Depends(get_openai_client)]
