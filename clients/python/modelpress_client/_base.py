"""What every group of methods shares: the transport and keyset pagination."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from modelpress_client._http import Transport
from modelpress_client.types import Page

T = TypeVar("T")


class Base:
    _t: Transport

    def _page(
        self,
        path: str,
        convert: Callable[[dict[str, Any]], T],
        params: dict[str, Any],
    ) -> Page[T]:
        body = self._t.json("GET", path, params=params)
        return Page(
            data=[convert(item) for item in body["data"]],
            has_more=bool(body.get("has_more")),
            next_cursor=body.get("next_cursor"),
        )

    def _iterate(
        self,
        path: str,
        convert: Callable[[dict[str, Any]], T],
        params: dict[str, Any],
    ) -> Iterator[T]:
        """Every item, a page at a time, following ``next_cursor`` through ``?after=``."""
        params = dict(params)
        while True:
            page = self._page(path, convert, params)
            yield from page.data
            if not page.has_more or not page.next_cursor:
                return
            params["after"] = page.next_cursor
