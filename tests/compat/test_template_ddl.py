"""The DDL generator (template_ddl.py) on its own, without Spark: it follows the template."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import template_ddl  # noqa: E402


@pytest.fixture(scope="module")
def template():
    return template_ddl.load_template()


def ddl(template, resource="EventsCsvTable"):
    return template_ddl.all_ddl(Path("/data"), template)[resource]


def test_every_column_in_order(template):
    for resource, ti in template_ddl.table_inputs(template).items():
        text = ddl(template, resource)
        listed = re.findall(r"`(\w+)` (\w+)", text.split("PARTITIONED BY")[0])
        want = [(c["Name"], c["Type"]) for c in ti["StorageDescriptor"]["Columns"]]
        assert listed == want
        assert f"ROW FORMAT SERDE '{ti['StorageDescriptor']['SerdeInfo']['SerializationLibrary']}'" in text
        assert "LOCATION 'file:///data/" + template_ddl.relative_location(
            ti["StorageDescriptor"]["Location"]) + "'" in text


def test_the_escape_char_is_written_as_an_escape(template):
    text = ddl(template)
    serde = template_ddl.table_inputs(template)["EventsCsvTable"]["StorageDescriptor"]["SerdeInfo"]
    assert serde["Parameters"]["escapeChar"] == "\r"
    assert "'escapeChar'='\\r'" in text
    assert all(ord(c) >= 0x20 or c == "\n" for c in text), "a raw control character in the DDL"


def test_athena_only_parameters_are_left_out(template):
    text = ddl(template)
    assert "projection." not in text and "storage.location.template" not in text
    assert "'EXTERNAL'" not in text and text.startswith("CREATE EXTERNAL TABLE")
    assert "'skip.header.line.count'='1'" in text


def test_a_template_change_shows_up(template):
    changed = copy.deepcopy(template)
    ti = changed["Resources"]["EventsCsvTable"]["Properties"]["TableInput"]
    ti["StorageDescriptor"]["Columns"].append({"Name": "new_column", "Type": "string"})
    ti["StorageDescriptor"]["SerdeInfo"]["Parameters"]["quoteChar"] = "'"
    ti["Parameters"]["serialization.null.format"] = ""
    text = ddl(changed)
    assert "`new_column` string" in text
    assert "'quoteChar'='\\''" in text
    assert "'serialization.null.format'=''" in text


def test_what_it_cannot_translate_is_an_error(template):
    changed = copy.deepcopy(template)
    sd = changed["Resources"]["EventsTable"]["Properties"]["TableInput"]["StorageDescriptor"]
    sd["BucketColumns"] = ["event_id"]
    with pytest.raises(ValueError, match="BucketColumns"):
        ddl(changed, "EventsTable")
    changed = copy.deepcopy(template)
    params = changed["Resources"]["EventsTable"]["Properties"]["TableInput"]["Parameters"]
    params["has_encrypted_data"] = {"Ref": "SomeParameter"}
    with pytest.raises(ValueError, match="CloudFormation expression"):
        ddl(changed, "EventsTable")


def test_short_form_tags_load():
    text = "A: !Ref X\nB: !Sub 'a-${X}'\nC: !GetAtt R.Arn\nD: !If [C, 1, 2]\nE: !Not [!Equals [a, b]]\n"
    import yaml

    doc = yaml.load(text, Loader=template_ddl.TemplateLoader)  # noqa: S506
    assert doc == {
        "A": {"Ref": "X"},
        "B": {"Fn::Sub": "a-${X}"},
        "C": {"Fn::GetAtt": ["R", "Arn"]},
        "D": {"Fn::If": ["C", 1, 2]},
        "E": {"Fn::Not": [{"Fn::Equals": ["a", "b"]}]},
    }
