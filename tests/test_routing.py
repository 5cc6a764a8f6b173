"""The routing table, one row per situation (pure, no I/O)."""

from __future__ import annotations

from bot.people import Role
from bot.routing import RouteInput, route


def test_any_pupil_concern_goes_to_the_dsl_channel_and_the_online_safety_lead() -> None:
    plan = route(RouteInput("pupil", "safeguarding", illegal=False, immediate_danger=False))
    assert plan.channel_purposes == ("dsl",)
    assert plan.case_roles == (Role.DSL, Role.DEPUTY_DSL)
    assert plan.summary_roles == (Role.ONLINE_SAFETY_LEAD,)
    assert plan.urgent_roles == ()


def test_illegal_or_danger_sends_urgent_alerts_to_dsls_deputies_and_headteacher() -> None:
    for illegal, danger in ((True, False), (False, True)):
        plan = route(RouteInput("pupil", "safeguarding", illegal=illegal, immediate_danger=danger))
        assert set(plan.urgent_roles) == {Role.DSL, Role.DEPUTY_DSL, Role.HEADTEACHER}
        assert plan.do_not_investigate


def test_allegation_about_staff_goes_to_the_headteacher_only() -> None:
    plan = route(RouteInput("staff", "safeguarding", illegal=False, immediate_danger=False))
    assert plan.case_roles == (Role.HEADTEACHER,)
    assert plan.alert_roles == (Role.HEADTEACHER,)
    assert plan.channel_purposes == ()
    assert plan.summary_roles == ()


def test_concern_about_the_headteacher_goes_to_the_chair_with_a_lado_prompt_and_never_the_head() -> None:
    plan = route(RouteInput("headteacher", "safeguarding", illegal=True, immediate_danger=False))
    assert plan.case_roles == (Role.CHAIR_OF_GOVERNORS,)
    assert plan.urgent_roles == (Role.CHAIR_OF_GOVERNORS,)
    assert plan.never_roles == (Role.HEADTEACHER,)
    assert plan.lado_prompt
    assert plan.channel_purposes == ()


def test_technical_reports_go_to_technicians_and_the_online_safety_lead() -> None:
    plan = route(RouteInput("unknown", "technical", illegal=False, immediate_danger=False))
    assert set(plan.alert_roles) == {Role.TECHNICIAN, Role.ONLINE_SAFETY_LEAD}
    assert plan.channel_purposes == ()


def test_data_protection_breaches_go_to_the_dpo_and_the_online_safety_lead() -> None:
    plan = route(RouteInput("unknown", "data_protection", illegal=False, immediate_danger=False))
    assert set(plan.alert_roles) == {Role.DPO, Role.ONLINE_SAFETY_LEAD}


def test_missed_sla_re_alerts_deputies_then_the_headteacher() -> None:
    plan = route(RouteInput("pupil", "safeguarding", illegal=False, immediate_danger=False))
    assert plan.sla_roles == ((Role.DEPUTY_DSL,), (Role.HEADTEACHER,))
