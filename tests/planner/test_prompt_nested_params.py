"""Nested pydantic parameters are described field by field in the planner's prompt."""

from __future__ import annotations

import doctest
from typing import Literal

from pydantic import BaseModel, Field

import tomasulo.planner._prompts as prompts
from tomasulo.planner import PlanContext, planner_messages, tool_catalog
from tomasulo.tools import Toolset, tool


class Address(BaseModel):
    """A postal address."""

    street: str = Field(description="street and number")
    city: str
    zip: str | None = None


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"]
    breed: str


class Person(BaseModel):
    name: str = Field(description="full name", max_length=80)
    age: int = Field(ge=0, le=150)
    address: Address
    previous: list[Address] = []
    pet: Cat | Dog | None = None
    scores: dict[str, int] = {}


@tool
def register(person: Person, where: Address | None = None) -> None:
    """Register a person.

    Args:
        person: who to register.
    """


def _catalog() -> list[str]:
    return tool_catalog(Toolset([register])).splitlines()


def test_every_field_of_a_model_parameter_is_listed_with_type_requiredness_and_description() -> None:
    lines = _catalog()
    assert "    person: who to register." in lines
    assert "      name: string (at most 80 characters) - full name" in lines
    assert "      age: integer (>= 0, <= 150)" in lines
    assert "      address: object - A postal address." in lines
    assert "        street: string - street and number" in lines
    assert "        city: string" in lines
    assert "        zip?: string | null (default null)" in lines
    assert "      scores?: object[string -> integer] (default {})" in lines


def test_arrays_of_models_and_unions_of_models_show_their_fields() -> None:
    lines = _catalog()
    at = lines.index("      previous?: array[object] (default [])")
    assert lines[at + 1 : at + 3] == ["        street: string - street and number", "        city: string"]
    at = lines.index("      pet?: object | object | null (default null)")
    assert lines[at + 1 : at + 7] == [
        "        option 1:",
        '          kind: "cat"',
        "          lives?: integer (default 9)",
        "        option 2:",
        '          kind: "dog"',
        "          breed: string",
    ]


def test_an_optional_model_parameter_without_a_description_is_listed_too() -> None:
    lines = _catalog()
    at = lines.index("    where: object | null")
    assert lines[at + 1] == "      street: string - street and number"


def test_the_fields_reach_the_planners_system_prompt() -> None:
    system, _ = planner_messages(Toolset([register]), PlanContext("q"), output="text")
    assert "        street: string - street and number" in system["content"]


def test_a_huge_model_is_cut_short() -> None:
    fields = {f"f{i}": (int, Field(description=f"field {i}")) for i in range(200)}
    from pydantic import create_model

    Big = create_model("Big", **fields)  # type: ignore[call-overload]

    def big(value: Big) -> None:  # type: ignore[valid-type]
        """Take a big model."""

    text = tool_catalog(Toolset([tool(big)]))
    assert "f59: integer - field 59" in text
    assert "f60" not in text
    assert text.splitlines()[-2].strip() == "..."


def test_plain_parameters_render_as_before() -> None:
    @tool
    def search(query: str, limit: int = 3) -> None:
        """Search.

        Args:
            query: what to look for.
        """

    assert tool_catalog(Toolset([search])).splitlines() == [
        "- search(query: string, limit?: integer)",
        "  Search.",
        "    query: what to look for.",
        '  returns: {"type":"null"}',
    ]


def test_the_docstring_example_holds() -> None:
    assert doctest.testmod(prompts, verbose=False).failed == 0
