"""``shopfloor opcua browse URL [--pattern GLOB]``: print a server's address space and a config snippet.

Browses breadth-first in batched Browse requests; the snippet (assets + one opcua source) validates as is.
Security defaults to the connector's (Basic256Sha256 + SignAndEncrypt, trust list); ``--security-policy
None --security-mode None`` browses unsecured, and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from asyncua import Client, ua

from connectors.opcua.config import NS0_URI, OpcUaSettings, parse_node_id
from connectors.opcua.security import NoMatchingEndpoint, Pki, SecurityError, apply_security
from shopfloor.model import SIGNAL_NAME_RE

log = logging.getLogger("shopfloor.opcua.browse")

SNIPPET_MARK = "# --- config snippet: paste into a plant config (shopfloor config validate checks it) ---"
_INT_TYPES = {"SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Integer", "UInteger"}
_FLOAT_TYPES = {"Float", "Double", "Number", "Decimal"}


class _Flow(dict):  # type: ignore[type-arg]
    """A mapping written on one line (signals and tags), like the generated plant config."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))


@dataclass
class BrowsedNode:
    node_id: ua.NodeId
    path: tuple[str, ...]
    node_class: ua.NodeClass
    depth: int
    data_type: str = ""
    unit: str = ""
    unit_node: ua.NodeId | None = None
    children: list[BrowsedNode] = field(default_factory=list)


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """``*`` within one path segment, ``**`` any number of segments, ``?`` one character, ``{a,b}``
    alternatives. A pattern without ``/`` matches any one segment of the path (``*hot-rolling*`` =
    ``**/*hot-rolling*/**``), as in .gitignore; with a ``/`` it matches the whole path."""
    body = _glob_body(pattern)
    if "/" not in pattern:
        return re.compile("^(?:.*/)?" + body + "(?:/.*)?$")
    return re.compile("^" + body + "$")


def _glob_body(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "{":
            j = pattern.find("}", i)
            if j < 0:
                out.append(re.escape(c))
            else:
                out.append("(?:" + "|".join(re.escape(a) for a in pattern[i + 1 : j].split(",")) + ")")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def node_text(node_id: ua.NodeId, namespaces: list[str]) -> str:
    """``nsu=<uri>;s=...`` (namespace by URI, never by index)."""
    kind = {
        ua.NodeIdType.String: "s",
        ua.NodeIdType.Guid: "g",
        ua.NodeIdType.ByteString: "b",
    }.get(node_id.NodeIdType, "i")
    ident: Any = node_id.Identifier
    if kind == "b":
        import base64

        ident = base64.b64encode(ident).decode()
    uri = namespaces[node_id.NamespaceIndex] if node_id.NamespaceIndex < len(namespaces) else ""
    if node_id.NamespaceIndex == 0:
        return f"{kind}={ident}"
    return f"nsu={uri};{kind}={ident}"


async def browse_tree(
    client: Client, root: ua.NodeId, max_depth: int, max_nodes: int, include_ns0: bool = False
) -> tuple[BrowsedNode, int]:
    """Breadth-first, one Browse request per level (in chunks), continuation points followed."""
    top = BrowsedNode(root, (), ua.NodeClass.Object, 0)
    level, seen, count = [top], {root}, 0
    while level and count < max_nodes:
        nxt: list[BrowsedNode] = []
        for start in range(0, len(level), 500):
            chunk = level[start : start + 500]
            params = ua.BrowseParameters(
                RequestedMaxReferencesPerNode=1000,
                NodesToBrowse=[
                    ua.BrowseDescription(
                        NodeId=n.node_id,
                        BrowseDirection=ua.BrowseDirection.Forward,
                        ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences),
                        IncludeSubtypes=True,
                        NodeClassMask=int(ua.NodeClass.Object | ua.NodeClass.Variable),
                        ResultMask=int(ua.BrowseResultMask.All),
                    )
                    for n in chunk
                ],
            )
            results = await client.uaclient.browse(params)
            for parent, res in zip(chunk, results, strict=True):
                refs = list(res.References or [])
                cont = res.ContinuationPoint
                while cont:
                    more = await client.uaclient.browse_next(
                        ua.BrowseNextParameters(ReleaseContinuationPoints=False, ContinuationPoints=[cont])
                    )
                    refs += more[0].References or []
                    cont = more[0].ContinuationPoint
                for ref in refs:
                    nid = ref.NodeId.to_nodeid() if hasattr(ref.NodeId, "to_nodeid") else ref.NodeId
                    name = ref.BrowseName.Name
                    if ref.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasProperty):
                        if name == "EngineeringUnits":
                            parent.unit_node = nid
                        continue
                    if nid in seen or (nid.NamespaceIndex == 0 and not include_ns0):
                        continue
                    seen.add(nid)
                    child = BrowsedNode(nid, (*parent.path, name), ref.NodeClass, parent.depth + 1)
                    parent.children.append(child)
                    count += 1
                    if child.depth < max_depth:
                        nxt.append(child)
        level = nxt
    await _read_details(client, top)
    return top, count


def _walk(node: BrowsedNode) -> list[BrowsedNode]:
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed(n.children))
    return out


async def _read_details(client: Client, top: BrowsedNode) -> None:
    variables = [n for n in _walk(top) if n.node_class == ua.NodeClass.Variable]
    for start in range(0, len(variables), 1000):
        chunk = variables[start : start + 1000]
        reads = [ua.ReadValueId(NodeId=n.node_id, AttributeId=ua.AttributeIds.DataType) for n in chunk]
        with_unit = [n for n in chunk if n.unit_node is not None]
        reads += [ua.ReadValueId(NodeId=n.unit_node, AttributeId=ua.AttributeIds.Value) for n in with_unit]
        values = await client.uaclient.read(ua.ReadParameters(NodesToRead=reads))
        for n, dv in zip(chunk, values[: len(chunk)], strict=True):
            dt = dv.Value.Value if dv.Value is not None else None
            if isinstance(dt, ua.NodeId):
                n.data_type = (
                    ua.ObjectIdNames.get(dt.Identifier, str(dt.Identifier))
                    if dt.NamespaceIndex == 0
                    else dt.to_string()
                )
        for n, dv in zip(with_unit, values[len(chunk) :], strict=True):
            eu = dv.Value.Value if dv.Value is not None else None
            text = getattr(getattr(eu, "DisplayName", None), "Text", None)
            n.unit = text or ""


def _segment(text: str) -> str:
    seg = re.sub(r"[^A-Za-z0-9_.\-]", "_", text.strip()) or "_"
    return seg if re.match(r"[A-Za-z0-9_]", seg) else f"_{seg}"


def asset_and_signal(path: tuple[str, ...], prefix: str) -> tuple[str, str]:
    """Parent browse path → asset path (2–8 segments), browse name → signal name."""
    parts = [_segment(p) for p in path[:-1]]
    if len(parts) < 2:
        parts = [_segment(prefix), *parts] if len(parts) == 1 else [_segment(prefix), "device"]
    if len(parts) > 8:
        parts = [".".join(parts[: len(parts) - 7]), *parts[len(parts) - 7 :]]
    if not re.match(r"[A-Za-z0-9]", parts[0]):
        parts[0] = "x" + parts[0]
    signal = re.sub(r"[^A-Za-z0-9_.\-]", "_", path[-1])
    if not SIGNAL_NAME_RE.match(signal):
        signal = f"_{signal}"
    return "/".join(parts), signal


def signal_type(data_type: str) -> str | None:
    if data_type == "Boolean":
        return "bool"
    if data_type in _INT_TYPES:
        return "int"
    if data_type in _FLOAT_TYPES:
        return "float"
    if data_type in ("String", "LocalizedText"):
        return "text"  # stored as text (an alarm text, a recipe name)
    return None  # dates, byte strings, structures: no signal type holds them


def numeric_paths(top: BrowsedNode) -> list[str]:
    """Browse paths of the variables a snippet can hold (numbers, booleans and text)."""
    return [
        "/".join(n.path)
        for n in _walk(top)
        if n.node_class == ua.NodeClass.Variable and n.path and signal_type(n.data_type) is not None
    ]


def no_match_note(pattern: str, paths: list[str]) -> str:
    """Said when ``pattern`` matched none of ``paths``: how many there are and a pattern that matches."""
    if not paths:
        return "# no number, boolean or text variables below the root to match"
    first = paths[0].split("/")
    example = "/".join(first[:2]) + "/**" if len(first) > 2 else first[-1]
    n = sum(1 for p in paths if glob_to_regex(example).match(p))
    return (
        f"# pattern {pattern!r} matched 0 of {len(paths)} number, boolean or text variables; for example "
        f"--pattern '{example}' matches {n} (e.g. {paths[0]}). '*' stays within one path segment, '**' "
        "spans segments; a pattern without '/' matches any one segment"
    )


def snippet(
    top: BrowsedNode, namespaces: list[str], pattern: str, settings: dict[str, Any], name: str, prefix: str
) -> tuple[str, int, int]:
    """A plant-config snippet (site, assets, one source) for the matching number, boolean and text variables."""
    rx = glob_to_regex(pattern)
    assets: dict[str, list[dict[str, Any]]] = {}
    tags: list[dict[str, Any]] = []
    skipped = 0
    uris: Counter[str] = Counter()
    for n in _walk(top):
        if n.node_class != ua.NodeClass.Variable or not n.path or not rx.match("/".join(n.path)):
            continue
        st = signal_type(n.data_type)
        if st is None:
            skipped += 1
            continue
        asset, signal = asset_and_signal(n.path, prefix)
        signals = assets.setdefault(asset, [])
        if any(s["name"] == signal for s in signals):
            skipped += 1
            continue
        sig: dict[str, Any] = _Flow(name=signal, type=st)
        if n.unit:
            sig["unit"] = n.unit
        signals.append(sig)
        text = node_text(n.node_id, namespaces)
        tags.append(_Flow(asset=asset, signal=signal, node_id=text))
        if text.startswith("nsu="):
            uris[parse_node_id(text).uri or ""] += 1
    if uris:
        settings = {**settings, "namespace_uri": uris.most_common(1)[0][0]}
    sites = Counter(a.split("/", 1)[0] for a in assets)
    doc = {
        "site": sites.most_common(1)[0][0] if sites else _segment(prefix),
        "assets": [{"path": a, "signals": s} for a, s in assets.items()],
        "sources": [{"name": name, "connector": "opcua", "settings": settings, "tags": tags}],
    }
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=200)
    return text, len(tags), skipped


def tree_lines(top: BrowsedNode, namespaces: list[str]) -> list[str]:
    lines = []

    def rec(n: BrowsedNode, indent: int) -> None:
        for c in n.children:
            kind = "Variable" if c.node_class == ua.NodeClass.Variable else "Object"
            extra = f" {c.data_type}" if c.data_type else ""
            unit = f" [{c.unit}]" if c.unit else ""
            lines.append(
                f"{'  ' * indent}{c.path[-1]}  ({kind}{extra}{unit})  {node_text(c.node_id, namespaces)}"
            )
            rec(c, indent + 1)

    rec(top, 0)
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="server endpoint, e.g. opc.tcp://plc:4840")
    parser.add_argument(
        "--pattern",
        default="**",
        help="glob on browse paths: * within a level, ** any levels, {a,b}; without '/' it matches any "
        "one level (e.g. '*hot-rolling*')",
    )
    parser.add_argument("--root", default="i=85", help="start node (default Objects, i=85); nsu= form")
    parser.add_argument("--depth", type=int, default=12, help="maximum depth below the root")
    parser.add_argument("--max-nodes", type=int, default=50_000, help="stop after this many nodes")
    parser.add_argument("--include-ns0", action="store_true", help="also list standard (ns=0) nodes")
    parser.add_argument(
        "--security-policy",
        default="Basic256Sha256",
        choices=["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep"],
        help="as the connector's security_policy (default Basic256Sha256; None only when asked for)",
    )
    parser.add_argument(
        "--security-mode",
        default="SignAndEncrypt",
        choices=["None", "Sign", "SignAndEncrypt"],
        help="as the connector's security_mode (default SignAndEncrypt)",
    )
    parser.add_argument(
        "--trust-dir", type=Path, help="trusted server certificates (default STATE_DIR/NAME/pki/trusted)"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path("var/state"), help="where the client certificate is kept"
    )
    parser.add_argument("--user", help="user name (password from --password-env)")
    parser.add_argument("--password-env", help="environment variable holding the password")
    parser.add_argument("--name", default="opcua-1", help="source name in the snippet")
    parser.add_argument(
        "--asset-prefix", default="plant", help="first segment for assets browsed too shallow"
    )
    parser.add_argument("--format", choices=["both", "tree", "yaml"], default="both")
    parser.add_argument("--timeout", type=float, default=10.0, help="request timeout, seconds")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    s: dict[str, Any] = {
        "endpoint": args.url,
        "security_policy": args.security_policy,
        "security_mode": args.security_mode,
    }
    if args.trust_dir:
        s["trust_dir"] = str(args.trust_dir)
    if args.user:
        s |= {"identity": "username", "username": args.user, "password_env": args.password_env}
    return s


UNSECURED_FLAGS = "--security-policy None --security-mode None"


async def browse(args: argparse.Namespace, out: Any = None, err: Any = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    raw = _settings(args)
    settings = OpcUaSettings.model_validate(raw)
    if settings.security_policy == "None":
        print(
            f"note: browsing {settings.endpoint} without security, as asked ({UNSECURED_FLAGS}): "
            "nothing is signed or encrypted and the server is not authenticated; leave both flags out "
            "to use Basic256Sha256 + SignAndEncrypt with the trust list, like the connector",
            file=err,
        )
    pki = Pki.for_source(settings, args.name, args.state_dir / args.name)
    client = Client(settings.endpoint, timeout=args.timeout)
    await apply_security(client, settings, pki, log)
    await asyncio.wait_for(client.connect(), args.timeout + 5)
    try:
        namespaces = list(await client.get_namespace_array())
        ref = parse_node_id(args.root)
        uri = ref.uri or NS0_URI
        if uri not in namespaces:
            print(f"namespace {uri!r} of --root is not on the server", file=sys.stderr)
            return 2
        root = ua.NodeId.from_string(f"ns={namespaces.index(uri)};{ref.kind}={ref.identifier}")
        top, count = await browse_tree(client, root, args.depth, args.max_nodes, args.include_ns0)
    finally:
        await client.disconnect()
    if args.format in ("both", "tree"):
        print(f"# {settings.endpoint}: {count} nodes below {args.root}", file=out)
        for line in tree_lines(top, namespaces):
            print(line, file=out)
    if args.format in ("both", "yaml"):
        text, n_tags, skipped = snippet(top, namespaces, args.pattern, raw, args.name, args.asset_prefix)
        print(SNIPPET_MARK, file=out)
        print(
            f"# {n_tags} tags matching {args.pattern!r}; {skipped} variables left out (dates, byte strings, "
            "structures, or a duplicate signal name)",
            file=out,
        )
        if n_tags == 0:
            note = no_match_note(args.pattern, numeric_paths(top))
            print(note, file=out)
            print(note.lstrip("# "), file=err)
        print(text, file=out, end="")
    return 0


def no_endpoint_hint(exc: NoMatchingEndpoint) -> str:
    """What to pass to browse instead (the error itself speaks of the config keys)."""
    if exc.offered and all(o == "None/None" for o in exc.offered):
        return f"the server offers no security at all; to browse it unsecured anyway, add {UNSECURED_FLAGS}"
    return (
        "pass --security-policy/--security-mode for one of the endpoints it offers "
        f"({UNSECURED_FLAGS} browses unsecured, if it offers that)"
    )


def run(args: argparse.Namespace) -> int:
    """Entry point for the CLI; returns the process exit code."""
    try:
        return asyncio.run(browse(args))
    except NoMatchingEndpoint as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(no_endpoint_hint(exc), file=sys.stderr)
        return 3
    except SecurityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (OSError, TimeoutError, ua.UaError) as exc:
        print(f"error: cannot browse {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
