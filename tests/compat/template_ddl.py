"""Hive DDL for the Glue tables in template.yaml, generated from the template itself.

`EventsTable` and `EventsCsvTable` are `AWS::Glue::Table` resources; their `TableInput` is turned
into one `CREATE [EXTERNAL] TABLE` statement each, field for field:

    TableInput.Name / TableType / Description      -> table name, EXTERNAL, COMMENT
    StorageDescriptor.Columns                      -> the column list (names, types, comments)
    PartitionKeys                                  -> PARTITIONED BY
    SerdeInfo.SerializationLibrary / .Parameters   -> ROW FORMAT SERDE ... WITH SERDEPROPERTIES
    StorageDescriptor.InputFormat / OutputFormat   -> STORED AS INPUTFORMAT ... OUTPUTFORMAT
    StorageDescriptor.Location                     -> LOCATION, re-rooted: the part after the
                                                      bucket (`parquet/`) under a local folder
    Parameters                                     -> TBLPROPERTIES, minus `projection.*` and
                                                      `storage.location.template` (Athena's
                                                      partition projection; a metastore
                                                      discovers partitions with MSCK REPAIR),
                                                      and minus `EXTERNAL` ("TRUE"), which is
                                                      the EXTERNAL keyword (checked to agree
                                                      with TableType)

Nothing about the columns or the SerDe is written here: a change in the template shows up in
the DDL. A TableInput or StorageDescriptor key this module does not translate is an error, not
silently dropped (so a template change cannot make the test read a different table than Glue).

    python3 tests/compat/template_ddl.py [DATA_DIR]    # prints both statements
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
TABLE_RESOURCES = ("EventsTable", "EventsCsvTable")
# TableInput.Parameters only Athena reads (partition projection): not table properties a
# metastore needs, and their values are CloudFormation expressions.
ATHENA_ONLY_PARAMETERS = re.compile(r"^(projection\..*|storage\.location\.template)$")

TABLE_INPUT_KEYS = {
    "Name",
    "Description",
    "TableType",
    "Parameters",
    "PartitionKeys",
    "StorageDescriptor",
}
STORAGE_KEYS = {"Location", "InputFormat", "OutputFormat", "SerdeInfo", "Columns"}
SERDE_KEYS = {"SerializationLibrary", "Parameters"}


# ------------------------------------------------------------------------------------------------
# reading the template


class Intrinsic(dict):
    """A CloudFormation short-form tag (`!Ref X`) as its long form (`{"Ref": "X"}`)."""


class TemplateLoader(yaml.SafeLoader):
    """SafeLoader that accepts every CloudFormation short-form tag (`!Ref`, `!Sub`, `!GetAtt`,
    `!If`, `!Not`, `!Equals`, ...), each read as its long form."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Intrinsic:
    name = suffix if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Intrinsic({name: value})


TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=TemplateLoader)  # noqa: S506 (a SafeLoader subclass)


def table_inputs(template: dict) -> dict[str, dict]:
    """`{resource name: TableInput}` of the two Glue tables."""
    resources = template["Resources"]
    out = {}
    for name in TABLE_RESOURCES:
        resource = resources.get(name)
        if resource is None:
            raise KeyError(f"template.yaml has no resource {name}")
        if resource.get("Type") != "AWS::Glue::Table":
            raise ValueError(f"{name} is {resource.get('Type')}, not AWS::Glue::Table")
        out[name] = resource["Properties"]["TableInput"]
    return out


# ------------------------------------------------------------------------------------------------
# quoting


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_string(value: str) -> str:
    """A single-quoted SQL string literal as Hive's and Spark's parsers unescape it
    (`unescapeSQLString`): every control character is written as an escape, so a value such
    as the CSV SerDe's escapeChar (a CR) survives the statement intact and visibly."""
    named = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out = []
    for ch in value:
        if ch in named:
            out.append(named[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def _literal(value, where: str) -> str:
    """A template value that must be a plain scalar (not a CloudFormation expression)."""
    if isinstance(value, (dict, list)):
        raise ValueError(f"{where} is a CloudFormation expression ({value!r}); no DDL for it")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _properties(params: dict, where: str) -> str:
    return ", ".join(
        f"{quote_string(str(k))}={quote_string(_literal(v, f'{where}.{k}'))}"
        for k, v in params.items()
    )


# ------------------------------------------------------------------------------------------------
# the DDL


def relative_location(location) -> str:
    """The part of `StorageDescriptor.Location` after the bucket: `!Sub "s3://${DataBucket}/
    parquet/"` -> `parquet/`."""
    text = location.get("Fn::Sub") if isinstance(location, dict) else location
    if isinstance(text, list):
        text = text[0]
    m = re.fullmatch(r"s3://[^/]+/(.*)", str(text))
    if not m:
        raise ValueError(f"Location {location!r} is not s3://BUCKET/PATH")
    return m.group(1)


def check_keys(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = set(mapping) - allowed
    if unknown:
        raise ValueError(
            f"{where} has {sorted(unknown)}, which tests/compat/template_ddl.py does not "
            "translate into DDL: teach it, so the test reads the table Glue defines"
        )


def _columns(columns: list[dict], where: str) -> str:
    parts = []
    for c in columns:
        check_keys(c, {"Name", "Type", "Comment"}, where)
        part = f"{quote_identifier(c['Name'])} {_literal(c['Type'], where)}"
        if "Comment" in c:
            part += f" COMMENT {quote_string(_literal(c['Comment'], where))}"
        parts.append(part)
    return ", ".join(parts)


def table_ddl(table_input: dict, location_root: str, name: str | None = None) -> str:
    """`CREATE [EXTERNAL] TABLE` for one TableInput. `location_root` is a URL (file:///...)
    the table's relative location is put under; `name` overrides TableInput.Name (e.g. to
    qualify it with a database)."""
    check_keys(table_input, TABLE_INPUT_KEYS, "TableInput")
    sd = table_input["StorageDescriptor"]
    check_keys(sd, STORAGE_KEYS, "StorageDescriptor")
    serde = sd["SerdeInfo"]
    check_keys(serde, SERDE_KEYS, "SerdeInfo")
    table_type = table_input.get("TableType", "EXTERNAL_TABLE")
    if table_type not in ("EXTERNAL_TABLE", "MANAGED_TABLE"):
        raise ValueError(f"TableType {table_type} has no Hive DDL here")
    name = name or quote_identifier(table_input["Name"])
    location = location_root.rstrip("/") + "/" + relative_location(sd["Location"])
    parts = [
        f"CREATE {'EXTERNAL ' if table_type == 'EXTERNAL_TABLE' else ''}TABLE {name} "
        f"({_columns(sd['Columns'], 'Columns')})"
    ]
    if "Description" in table_input:
        parts.append(f"COMMENT {quote_string(_literal(table_input['Description'], 'Description'))}")
    if table_input.get("PartitionKeys"):
        parts.append(f"PARTITIONED BY ({_columns(table_input['PartitionKeys'], 'PartitionKeys')})")
    parts.append(f"ROW FORMAT SERDE {quote_string(serde['SerializationLibrary'])}")
    if serde.get("Parameters"):
        parts.append(f"WITH SERDEPROPERTIES ({_properties(serde['Parameters'], 'SerdeInfo')})")
    parts.append(
        f"STORED AS INPUTFORMAT {quote_string(sd['InputFormat'])} "
        f"OUTPUTFORMAT {quote_string(sd['OutputFormat'])}"
    )
    parts.append(f"LOCATION {quote_string(location)}")
    params = {
        k: v
        for k, v in (table_input.get("Parameters") or {}).items()
        if not ATHENA_ONLY_PARAMETERS.match(k)
    }
    # Glue's `EXTERNAL: "TRUE"` is the table parameter Hive's CREATE EXTERNAL TABLE itself
    # sets: it is said by the keyword (Spark refuses it as a TBLPROPERTIES key, "preserved
    # property key"), and must agree with TableType.
    external = params.pop("EXTERNAL", None)
    if external is not None and (str(external).upper() == "TRUE") != (table_type == "EXTERNAL_TABLE"):
        raise ValueError(f"Parameters.EXTERNAL={external!r} contradicts TableType {table_type}")
    if params:
        parts.append(f"TBLPROPERTIES ({_properties(params, 'Parameters')})")
    return "\n".join(parts)


def file_url(path: Path) -> str:
    return Path(path).resolve().as_uri()


def all_ddl(data_dir: Path, template: dict | None = None, database: str | None = None) -> dict:
    """`{resource name: DDL}` for both tables over a local data folder."""
    template = template or load_template()
    out = {}
    for resource, ti in table_inputs(template).items():
        name = quote_identifier(ti["Name"])
        if database:
            name = f"{quote_identifier(database)}.{name}"
        out[resource] = table_ddl(ti, file_url(data_dir), name)
    return out


if __name__ == "__main__":
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data")
    for statement in all_ddl(data).values():
        print(statement + ";\n")
