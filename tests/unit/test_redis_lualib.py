"""The shared Lua helpers a Redis script is sent with: those it uses, directly or not, in order."""

from __future__ import annotations

import re

from backbeat.stores.redis import lualib, scripts

LIB = """-- header
local P = ARGV[1]
local K_A = P .. 'a'
local K_B, K_C = P .. 'b', P .. 'c'

-- the key of a thing
local function key_of(id)
  return K_A .. id
end

local function unused(id)
  -- calls key_of(id), in a comment only
  return K_B .. id
end

local function both(id)
  return key_of(id) .. K_C
end
"""


def defined(text: str) -> list[str]:
    return re.findall(r"^local (?:function )?([A-Za-z_][A-Za-z0-9_, ]*?)(?:\(| =)", text, re.M)


def test_a_script_gets_what_it_names_and_what_that_names_in_order() -> None:
    kept = lualib.needed(LIB, "return both(ARGV[2])")
    assert defined(kept) == ["P", "K_A", "K_B, K_C", "key_of", "both"]
    assert "-- the key of a thing" in kept


def test_a_helper_named_only_in_a_comment_is_left_out() -> None:
    assert defined(lualib.needed(LIB, "-- unused(x) would do\nreturn K_A")) == ["P", "K_A"]


def test_a_script_naming_nothing_gets_no_helper() -> None:
    assert defined(lualib.needed(LIB, "return 1")) == []


def test_the_add_script_is_sent_with_the_index_helpers_and_without_the_run_ones() -> None:
    source = scripts.source("add")
    assert "local function index_add(" in source
    assert "local function bucket_of(" in source  # through index_add
    assert "local function add_waiting_run(" not in source


def test_the_add_scripts_short_path_runs_before_the_helpers_and_merges_as_often_as_they_do() -> None:
    source = scripts.source("add")
    head, marked, _ = source.partition(scripts.HELPERS)
    assert marked and "local function" not in head and "redis.pcall('HSETNX'" in head
    assert "local function merge_recent(" in source
    recent = re.search(r"^local RECENT = (\d+)$", source, re.M)
    assert recent is not None and f"if pushed < {recent.group(1)} then" in head
