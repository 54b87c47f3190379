"""The metadata filter language: every operator, precedence, field paths, absent fields, bad input."""

from __future__ import annotations

import pytest

from core.vectors import EmbeddedVectorIndex, FilterError, VectorIndexError, VectorRecord, compile_filter

CITY = {
    "city": "Istanbul",
    "country": "Turkey",
    "is_capital": False,
    "population": 15460000,
    "area": 5343.22,
    "geography": {"continent": "Asia", "coordinates": {"latitude": 41.0082, "longitude": 28.9784}},
    "economy": {"currency": "TRY", "major_industries": ["Tourism", "Textiles", "Finance"]},
    "scores": [3, 1, 4],
    "code": "A-113",
}


def matches(expression: str, metadata: dict | None = CITY) -> bool:
    return compile_filter(expression)(metadata)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("country = 'Turkey'", True),
        ('country = "Turkey"', True),
        ("country = 'Germany'", False),
        ("population = 15460000", True),
        ("area = 5343.22", True),
        ("is_capital = false", True),
        ("is_capital = FALSE", True),
        ("is_capital = true", False),
        ("is_capital = 0", True),  # Upstash documents booleans as 1 / 0
        ("country != 'Germany'", True),
        ("country != 'Turkey'", False),
        ("population != 1", True),
        ("is_capital != true", True),
        ("population < 20000000", True),
        ("population < 15460000", False),
        ("population <= 15460000", True),
        ("population > 15460000", False),
        ("population >= 15460000", True),
        ("area > 5343.2", True),
        ("population > -1", True),
        ("population < 1.5e7", False),
        ("city < 'J'", True),  # strings order lexicographically
        ("city >= 'J'", False),
    ],
)
def test_comparisons(expression, expected):
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("city GLOB 'Ist*'", True),
        ("city GLOB 'ist*'", False),  # case sensitive
        ("city GLOB '?[sz]*[^m-z]'", True),  # Upstash's example: 2nd char s or z, last not in m-z
        ("city GLOB '?[sz]*[^a-l]'", False),  # ends with l
        ("city GLOB 'I?tanbul'", True),
        ("city GLOB 'I[!x]tanbul'", True),
        ("city GLOB '[ABC]*'", False),
        ("city GLOB 'Istanbul'", True),
        ("code GLOB 'A-1*'", True),
        ("city NOT GLOB 'A*'", True),
        ("city NOT GLOB 'I*'", False),
        ("country IN ('Germany', 'Turkey', 'France')", True),
        ("country IN ('Germany')", False),
        ("population IN (1, 15460000)", True),
        ("is_capital IN (false)", True),
        ("economy.currency NOT IN ('USD', 'EUR')", True),
        ("economy.currency NOT IN ('TRY', 'EUR')", False),
        ("economy.major_industries CONTAINS 'Tourism'", True),
        ("economy.major_industries CONTAINS 'Steel'", False),
        ("scores CONTAINS 4", True),
        ("scores CONTAINS '4'", False),
        ("economy.major_industries NOT CONTAINS 'Steel'", True),
        ("economy.major_industries NOT CONTAINS 'Finance'", False),
        ("HAS FIELD geography.continent", True),
        ("HAS FIELD geography.ocean", False),
        ("HAS NOT FIELD geography.ocean", True),
        ("HAS NOT FIELD city", False),
        ("has field city", True),
    ],
)
def test_glob_in_contains_and_has_field(expression, expected):
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("geography.continent = 'Asia'", True),
        ("geography.coordinates.latitude >= 35.0", True),
        ("economy.major_industries[0] = 'Tourism'", True),
        ("economy.major_industries[1] = 'Tourism'", False),
        ("economy.major_industries[#-1] = 'Finance'", True),
        ("economy.major_industries[#-3] = 'Tourism'", True),
        ("economy.major_industries[#-4] = 'Tourism'", False),  # before the first element
        ("economy.major_industries[7] = 'Tourism'", False),
        ("scores[2] > 3", True),
        ("HAS FIELD scores[2]", True),
        ("HAS FIELD scores[3]", False),
        ("city[0] = 'I'", False),  # a string is not an array
        ("city.name = 'Istanbul'", False),  # nor an object
    ],
)
def test_nested_fields_and_array_elements(expression, expected):
    assert matches(expression) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "missing = 1",
        "missing != 1",
        "missing < 1",
        "missing GLOB '*'",
        "missing NOT GLOB 'x'",
        "missing IN (1, 'a')",
        "missing NOT IN (1, 'a')",
        "missing CONTAINS 1",
        "missing NOT CONTAINS 1",
        "geography.missing.deeper = 'x'",
        # A value of another type than the literal never compares, negations included.
        "population = '15460000'",
        "population != 'x'",
        "country > 5",
        "country < true",
        "is_capital != 'no'",
        "population GLOB '1*'",
        "country CONTAINS 'T'",
        "country NOT CONTAINS 'T'",
        "economy NOT IN ('x')",
        "scores = 3",
        "population NOT IN ('a', 'b')",
    ],
)
def test_absent_fields_and_type_mismatches_never_match(expression):
    assert not matches(expression)
    assert not matches(expression, None)


@pytest.mark.parametrize(
    ("expression", "metadata", "expected"),
    [
        ("flag = 1", {"flag": True}, True),  # Upstash documents booleans as 1 / 0
        ("flag != 0", {"flag": True}, True),
        ("flag = 2", {"flag": True}, False),
        ("flag != 2", {"flag": True}, False),  # a boolean is not comparable with 2
        ("n = true", {"n": 1}, False),  # but a number is not a boolean
        ("n != true", {"n": 1}, False),
        ("flag IN (1)", {"flag": True}, True),
        ("n IN (true)", {"n": 1}, False),
        ("n IN (true, 1)", {"n": 1}, True),
        ("n IN (1, 'a')", {"n": 1.0}, True),
        ("n NOT IN (true)", {"n": 1}, False),
        ("flags CONTAINS true", {"flags": [1, 0]}, False),
        ("flags CONTAINS true", {"flags": [False, True]}, True),
        ("flags NOT CONTAINS true", {"flags": [1]}, True),
        ("flags CONTAINS 1", {"flags": [True]}, True),
        ("names CONTAINS 'a'", {"names": [["a"], "b"]}, False),
        ("n > 1", {"n": True}, False),
    ],
)
def test_booleans_numbers_and_membership(expression, metadata, expected):
    assert matches(expression, metadata) is expected


def test_long_and_or_chains():
    metadata = {f"a{i}": i for i in range(50)}
    every = " AND ".join(f"a{i} = {i}" for i in range(50))
    assert matches(every, metadata)
    assert not matches(every.replace("a49 = 49", "a49 = 0"), metadata)
    assert matches(" OR ".join(f"a{i} = -1" for i in range(50)) + " OR a7 = 7", metadata)
    assert not matches(" OR ".join(f"a{i} = -1" for i in range(50)), metadata)


def test_has_not_field_matches_records_without_metadata():
    assert matches("HAS NOT FIELD anything", None)
    assert not matches("HAS FIELD anything", None)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # AND binds tighter than OR: (Turkey AND small) OR capital  -> false OR false
        ("country = 'Turkey' AND population < 100 OR is_capital = true", False),
        # Turkey AND (small OR not capital) -> true AND true
        ("country = 'Turkey' AND (population < 100 OR is_capital = false)", True),
        # (France AND x) OR Istanbul  -> true; a left-to-right reading would say false
        ("country = 'France' AND population > 0 OR city = 'Istanbul'", True),
        ("city = 'Istanbul' OR country = 'France' AND population < 0", True),
        ("(city = 'Istanbul' OR country = 'France') AND population < 0", False),
        ("((country = 'Turkey'))", True),
        ("country = 'Turkey' and population > 1 or city = 'x'", True),
        ("country = 'X' OR country = 'Y' OR country = 'Turkey'", True),
        ("country = 'Turkey' AND city = 'Istanbul' AND population < 5", False),
    ],
)
def test_precedence_and_parentheses(expression, expected):
    assert matches(expression) is expected


def test_strings_may_escape_quotes():
    assert matches("name = 'it\\'s'", {"name": "it's"})
    assert matches('name = "say \\"hi\\""', {"name": 'say "hi"'})
    assert matches('name = "it\'s"', {"name": "it's"})


def test_fields_may_be_named_like_keywords():
    assert matches("in = 1 AND has = 2", {"in": 1, "has": 2})


@pytest.mark.parametrize(
    ("expression", "position", "expected_words"),
    [
        ("", 0, "a condition"),
        ("   ", 3, "a condition"),
        ("country =", 9, "a value"),
        ("country = 'Turkey' AND", 22, "a field name"),
        ("country 'Turkey'", 8, "an operator"),
        ("(country = 'Turkey'", 19, "a closing parenthesis"),
        ("country = 'Turkey')", 18, "AND, OR or the end"),
        ("country = 'Turkey", 10, "no closing '"),
        ("country IN 'Turkey'", 11, "( to open the list"),
        ("country IN ('a', 'b'", 20, ", or ) to close"),
        ("country IN ()", 12, "a value"),
        ("city GLOB 5", 10, "a quoted glob pattern"),
        ("city NOT = 'x'", 9, "GLOB, IN or CONTAINS after NOT"),
        ("country ~ 'x'", 8, "unexpected character"),
        ("a[x] = 1", 1, ".key, [n] or [#-n]"),
        ("a..b = 1", 1, ".key, [n] or [#-n]"),
        ("HAS FIELD", 9, "a field name"),
        ("HAS NOT city", 8, "FIELD"),
        ("a = 1 b = 2", 6, "AND, OR or the end"),
        ("= 1", 0, "a field name"),
        ("a = 1 OR OR b = 2", 9, "a field name"),
        ("a[#-0] = 1", 1, "past the end"),
        ("a = @", 4, "unexpected character"),
    ],
)
def test_malformed_filters_say_where_and_what(expression, position, expected_words):
    with pytest.raises(FilterError) as raised:
        compile_filter(expression)
    assert raised.value.position == position
    assert f"position {position}" in str(raised.value)
    assert expected_words in str(raised.value)


def test_a_filter_error_is_a_vector_index_error_and_a_value_error():
    with pytest.raises(VectorIndexError):
        compile_filter("a =")
    with pytest.raises(ValueError, match="a filter must be a string"):
        compile_filter(42)  # type: ignore[arg-type]


def test_compiled_filters_are_cached():
    assert compile_filter("population > 5") is compile_filter("population > 5")


async def test_a_malformed_filter_in_a_query_or_delete_raises_vector_index_error():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    await index.upsert([VectorRecord("a", [1.0, 0.0], metadata={"n": 1})])

    with pytest.raises(VectorIndexError, match="position 4"):
        await index.query(vector=[1.0, 0.0], filter="n = ")
    with pytest.raises(VectorIndexError, match="position 0"):
        await index.delete(filter="")
    assert len(await index.query(vector=[1.0, 0.0], filter="   ")) == 1  # blank = no filter
