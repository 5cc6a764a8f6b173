"""Who is told about a concern, and who may see it: the routing table from the policies as a pure function."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot.people import Role

SAFEGUARDING_CASE_ROLES = (Role.DSL, Role.DEPUTY_DSL)
# Who holds a role's cases when nobody in the directory holds that role.
STAND_INS = {Role.CHAIR_OF_GOVERNORS: Role.VICE_CHAIR_OF_GOVERNORS}


@dataclass(frozen=True)
class RouteInput:
    subject_kind: str  # pupil | staff | staff_low_level | headteacher | visitor | unknown
    routing: str  # safeguarding | technical | data_protection (from the category)
    illegal: bool
    immediate_danger: bool


@dataclass(frozen=True)
class RoutingPlan:
    case_roles: tuple[Role, ...]  # who owns and may act on the case
    channel_purposes: tuple[str, ...]  # minimal card only: reference, group, severity, age, status
    urgent_roles: tuple[Role, ...]  # urgent 1:1 alert with the case card
    alert_roles: tuple[Role, ...]  # 1:1 alert with the case card
    summary_roles: tuple[Role, ...]  # 1:1 minimal notice (keeps the incident log), no details
    never_roles: tuple[Role, ...]  # people holding these roles are never told and never see the case
    sla_roles: tuple[tuple[Role, ...], ...]  # who is re-alerted at each missed SLA stage
    lado_prompt: bool
    do_not_investigate: bool


def route(case: RouteInput) -> RoutingPlan:
    """Apply the routing rules; the most specific situation wins (Headteacher, then staff, then the rest)."""
    urgent = case.illegal or case.immediate_danger
    if case.subject_kind == "staff_low_level" and not urgent:
        # A low-level concern (below the harm threshold) goes to the Headteacher for the register; no LADO.
        return RoutingPlan(
            case_roles=(Role.HEADTEACHER,),
            channel_purposes=(),
            urgent_roles=(),
            alert_roles=(Role.HEADTEACHER,),
            summary_roles=(),
            never_roles=(),
            sla_roles=((Role.HEADTEACHER,),),
            lado_prompt=False,
            do_not_investigate=False,
        )
    if case.subject_kind in ("headteacher", "staff", "staff_low_level"):
        # Allegations go to their one case manager only: the Chair of Governors when the Headteacher is the
        # subject (and the Headteacher is never told), otherwise the Headteacher. A child in danger now also
        # needs the DSL team at once; the person the allegation is about is excluded by the caller, by id.
        manager = (Role.CHAIR_OF_GOVERNORS,) if case.subject_kind == "headteacher" else (Role.HEADTEACHER,)
        about_head = case.subject_kind == "headteacher"
        danger_team = SAFEGUARDING_CASE_ROLES if case.immediate_danger else ()
        return RoutingPlan(
            case_roles=manager,
            channel_purposes=(),
            urgent_roles=manager + danger_team if urgent else (),
            alert_roles=() if urgent else manager,
            summary_roles=(),
            never_roles=(Role.HEADTEACHER,) if about_head else (),
            # The Vice-Chair is next in line when the Chair does not answer (and takes alerts the Chair cannot).
            sla_roles=(manager, (Role.VICE_CHAIR_OF_GOVERNORS,))
            if about_head
            else (manager, (Role.CHAIR_OF_GOVERNORS,)),
            lado_prompt=about_head or urgent,
            do_not_investigate=urgent,
        )
    if case.routing == "technical" and not urgent:
        return RoutingPlan(
            case_roles=(Role.TECHNICIAN, Role.ONLINE_SAFETY_LEAD),
            channel_purposes=(),
            urgent_roles=(),
            alert_roles=(Role.TECHNICIAN, Role.ONLINE_SAFETY_LEAD),
            summary_roles=(),
            never_roles=(),
            sla_roles=((Role.ONLINE_SAFETY_LEAD,),),
            lado_prompt=False,
            do_not_investigate=False,
        )
    if case.routing == "data_protection" and not urgent:
        return RoutingPlan(
            case_roles=(Role.DPO, Role.ONLINE_SAFETY_LEAD),
            channel_purposes=(),
            urgent_roles=(),
            alert_roles=(Role.DPO, Role.ONLINE_SAFETY_LEAD),
            summary_roles=(),
            never_roles=(),
            sla_roles=((Role.ONLINE_SAFETY_LEAD,),),
            lado_prompt=False,
            do_not_investigate=False,
        )
    return RoutingPlan(
        case_roles=SAFEGUARDING_CASE_ROLES,
        channel_purposes=("dsl",),
        urgent_roles=(Role.DSL, Role.DEPUTY_DSL, Role.HEADTEACHER) if urgent else (),
        alert_roles=(),
        summary_roles=(Role.ONLINE_SAFETY_LEAD,),
        never_roles=(),
        sla_roles=((Role.DEPUTY_DSL,), (Role.HEADTEACHER,)),
        lado_prompt=False,
        do_not_investigate=urgent,
    )


def with_stand_ins(plan: RoutingPlan, held: frozenset[Role]) -> RoutingPlan:
    """The plan with each case-managing role nobody holds (`held` is every role someone holds) replaced by its
    stand-in, so the case goes straight to someone who exists rather than to nobody."""
    missing = {
        role: stand_in
        for role, stand_in in STAND_INS.items()
        if role in plan.case_roles and role not in held and stand_in in held
    }
    if not missing:
        return plan

    def swap(roles: tuple[Role, ...]) -> tuple[Role, ...]:
        return tuple(dict.fromkeys(missing.get(role, role) for role in roles))

    return replace(
        plan,
        case_roles=swap(plan.case_roles),
        urgent_roles=swap(plan.urgent_roles),
        alert_roles=swap(plan.alert_roles),
        sla_roles=tuple(swap(stage) for stage in plan.sla_roles),
    )
