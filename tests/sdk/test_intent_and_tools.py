"""detect_intent and list_tools through the SDK."""

from __future__ import annotations

import mixpeek
import pytest
from mixpeek import (
    ClarificationOption,
    DetectIntentRequest,
    IntentClassification,
    ListToolsResponse,
    SuitableCollection,
    ToolInfo,
)

from cli.demo_data import DEMO_COLLECTION
from tests.sdk.helpers import content_type

pytestmark = pytest.mark.integration


# 9. detect_intent


def test_detect_intent_classifies_and_finds_suitable_collections(sdk: mixpeek.AgentSessionsApi,
                                                                 seeded: tuple[str, str, str]) -> None:
    resp = sdk.detect_intent_agents_sessions_with_http_info(
        DetectIntentRequest(user_request="find documents about redis streams"))
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    c = resp.data
    assert isinstance(c, IntentClassification)
    assert (c.intent, c.recommended_action, c.clarification_needed) == ("execution", "execute_retriever", False)
    assert 0 <= c.confidence <= 1 and c.reasoning
    assert c.suitable_collections and isinstance(c.suitable_collections[0], SuitableCollection)
    best = c.suitable_collections[0]
    assert best.collection_name == DEMO_COLLECTION and best.collection_id.startswith("col_")
    assert 0 < best.match_score <= 1 and best.feature_extractor
    assert c.keywords_found is not None and "find" in c.keywords_found["execution_keywords"]
    assert set(c.keywords_found) == {"setup_keywords", "execution_keywords", "neutral_keywords"}

    setup = sdk.detect_intent_agents_sessions(
        DetectIntentRequest(user_request="set up a pipeline to ingest and index my videos"))
    assert (setup.intent, setup.recommended_action) == ("setup", "setup_pipeline")
    vague = sdk.detect_intent_agents_sessions(DetectIntentRequest(user_request="videos"))
    assert vague.intent == "ambiguous" and vague.clarification_needed is True
    assert vague.clarification_options and all(isinstance(o, ClarificationOption)
                                                for o in vague.clarification_options)
    blind = sdk.detect_intent_agents_sessions(DetectIntentRequest(user_request="find documents about redis",
                                                                  include_collection_analysis=False))
    assert blind.suitable_collections is None


def test_detect_intent_in_an_empty_namespace_suggests_no_collection(sdk: mixpeek.AgentSessionsApi) -> None:
    c = sdk.detect_intent_agents_sessions(DetectIntentRequest(user_request="find documents about redis"))
    assert c.intent == "execution" and not c.suitable_collections


# 10. list_tools


def test_list_tools_with_and_without_a_category(sdk: mixpeek.AgentSessionsApi) -> None:
    resp = sdk.list_tools_agents_sessions_with_http_info()
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    tools = resp.data
    assert isinstance(tools, ListToolsResponse) and tools.total == len(tools.results) > 0
    assert all(isinstance(t, ToolInfo) for t in tools.results)
    assert set(tools.categories) == {t.category for t in tools.results}
    by_name = {t.name: t for t in tools.results}
    assert {"smart_search", "execute_retriever", "list_collections", "create_collection",
            "delete_collection"} <= set(by_name)
    assert by_name["create_collection"].requires_confirmation is True
    assert by_name["delete_collection"].requires_confirmation is True
    for t in tools.results:
        assert t.requires_confirmation is (t.category in {"create", "update", "delete"}), t.name
        assert set(t.required_params or []) <= set((t.parameters or {}).get("properties", {}))

    search = sdk.list_tools_agents_sessions(category="search")
    assert search.total == len(search.results) and {t.category for t in search.results} == {"search"}
    assert {"smart_search", "execute_retriever"} <= {t.name for t in search.results}
    assert sdk.list_tools_agents_sessions(category="no-such-category").results == []
