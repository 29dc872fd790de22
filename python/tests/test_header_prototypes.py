"""The ctypes prototypes, structures and constants of our package (python/mooncake) against the C
headers they copy (include/*.h, cbindgen output).

Both sides are read as text: no library is loaded and `mooncake` is not imported (as everywhere in
this suite, see README.md), so the check runs wherever pytest does.

* C side: a small parser for cbindgen's regular output: `#define NAME value`, `typedef`s,
  `struct`/`union` bodies, one declaration per function.
* Python side: the `_PROTOTYPES = {name: (restype, [argtypes])}` tables, the `ctypes.Structure`
  classes and the module-level constants, evaluated from the modules' syntax trees (`ast`).

For every function the package declares: it is in a header, has as many arguments, and each
ctypes type is compatible with the C type (the table below, LP64 Linux); the same for the
restype and for every field of every Structure; every repeated constant equals the header's.

| ctypes | compatible C types |
|---|---|
| `c_int`, `c_int32` | `int`, `int32_t` (and typedefs of them, e.g. `segment_id_t`) |
| `c_uint64` / `c_int64` | `uint64_t` / `int64_t` (e.g. `batch_id_t`) |
| `c_size_t` | `size_t`, `uint64_t` (both unsigned 64-bit here) |
| `c_double` | `double` |
| `c_char_p` | `char *`, `const char *` |
| `c_void_p` | any pointer (deliberate, see below) |
| `POINTER(T)` | `U *` with `T` compatible with `U` (`POINTER(c_void_p)` = `void **`, `T **`) |
| a `Structure` subclass | the `struct` named in `STRUCTS`, whose fields are checked the same way |
| `None` (restype) | `void` |

`c_void_p` stands for any pointer where the package means it: opaque handles (`transfer_engine_t`,
`mooncake_store_t`, `mooncake_store_buffer_t *`), `void *` and `void **`, and addresses the package
holds as Python integers.

Deliberate exceptions are listed, with the reason, in `EXCEPTIONS`; one that no longer applies
fails too. The unit tests at the end feed the checker mismatching declarations to show that it
fails on each kind of mismatch."""
import ast
import os
import re

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))
PACKAGE = os.path.join(ROOT, "python", "mooncake")
INCLUDE = os.path.join(ROOT, "include")

#: The modules whose `_PROTOTYPES` tables must be found (so that a rename cannot empty the check).
PROTOTYPE_MODULES = ("_lib.py", "_store_lib.py")

#: Python Structure class -> the C struct it mirrors.
STRUCTS = {
    "TransferRequest": "transfer_request",
    "NotifyMsg": "notify_msg",
    "TransferStatus": "transfer_status",
    "BufferEntry": "buffer_entry",
    "ReplicateConfigC": "mooncake_replicate_config",
    "StoreRange": "mooncake_store_range",
    "ReplicaDescC": "mooncake_store_replica_desc",
}

#: (module, name or Class.attribute) -> the header's #define it repeats.
CONSTANTS = {
    ("engine.py", "TransferOpcode.Read"): "OPCODE_READ",
    ("engine.py", "TransferOpcode.Write"): "OPCODE_WRITE",
    ("engine.py", "_STATUS_COMPLETED"): "STATUS_COMPLETED",
    ("engine.py", "_STATUS_FAILED"): "STATUS_FAILED",
    ("engine.py", "_STATUS_TIMEOUT"): "STATUS_TIMEOUT",
    ("engine.py", "_INVALID_BATCH"): "INVALID_BATCH",
    ("store.py", "INVALID_PARAMS"): "MOONCAKE_STORE_INVALID_PARAMS",
    ("store.py", "NOT_SUPPORTED"): "MOONCAKE_STORE_NOT_SUPPORTED",
}

VOID = ("void",)
CHAR = ("char",)
ANY_POINTER = ("any pointer",)  # c_void_p


def _int(bits, signed):
    return ("int", bits, signed)


def ptr(t):
    return ("ptr", t)


#: (function, argument index or "return") -> (ctypes type, C type, why it is deliberate).
EXCEPTIONS = {
    ("mooncake_store_put_ex", 2): (
        ptr(CHAR), ptr(VOID), "`const void *value` as c_char_p: a bytes object is passed by address, without a copy"),
}

# LP64 Linux (the only platform the package supports).
C_BASE = {
    "void": VOID, "char": CHAR, "signed char": _int(8, True), "unsigned char": _int(8, False),
    "bool": _int(8, False), "_Bool": _int(8, False),
    "short": _int(16, True), "unsigned short": _int(16, False),
    "int": _int(32, True), "unsigned int": _int(32, False), "unsigned": _int(32, False),
    "long": _int(64, True), "unsigned long": _int(64, False),
    "long long": _int(64, True), "unsigned long long": _int(64, False),
    "int8_t": _int(8, True), "uint8_t": _int(8, False), "int16_t": _int(16, True), "uint16_t": _int(16, False),
    "int32_t": _int(32, True), "uint32_t": _int(32, False), "int64_t": _int(64, True), "uint64_t": _int(64, False),
    "size_t": _int(64, False), "ssize_t": _int(64, True), "intptr_t": _int(64, True), "uintptr_t": _int(64, False),
    "float": ("float",), "double": ("double",),
}
C_LIMITS = {"UINT64_MAX": (1 << 64) - 1, "INT64_MAX": (1 << 63) - 1, "INT64_MIN": -(1 << 63),
            "UINT32_MAX": (1 << 32) - 1, "INT32_MAX": (1 << 31) - 1, "INT32_MIN": -(1 << 31),
            "SIZE_MAX": (1 << 64) - 1}
CTYPES = {
    "c_bool": _int(8, False), "c_byte": _int(8, True), "c_ubyte": _int(8, False),
    "c_int8": _int(8, True), "c_uint8": _int(8, False), "c_short": _int(16, True), "c_ushort": _int(16, False),
    "c_int16": _int(16, True), "c_uint16": _int(16, False),
    "c_int": _int(32, True), "c_uint": _int(32, False), "c_int32": _int(32, True), "c_uint32": _int(32, False),
    "c_long": _int(64, True), "c_ulong": _int(64, False), "c_longlong": _int(64, True), "c_ulonglong": _int(64, False),
    "c_int64": _int(64, True), "c_uint64": _int(64, False), "c_size_t": _int(64, False), "c_ssize_t": _int(64, True),
    "c_float": ("float",), "c_double": ("double",), "c_char": CHAR,
    "c_char_p": ptr(CHAR), "c_void_p": ANY_POINTER,
}


def show(t):
    """A type as C would spell it (for messages)."""
    if t[0] == "ptr":
        return show(t[1]) + " *"
    if t[0] == "int":
        return f"{'' if t[2] else 'u'}int{t[1]}_t"
    if t[0] == "struct":
        return f"struct {t[1]}"
    if t[0] == "pystruct":
        return f"Structure {t[1]}"
    if t[0] == "array":
        return f"{show(t[1])}[{t[2]}]"
    return t[0]


# ------------------------------------------------------------------------------------------------
# C side


class Headers:
    def __init__(self):
        self.defines = {}    # name -> int, or the raw text when not a number
        self.typedefs = {}   # name -> raw type text
        self.structs = {}    # name -> [(field, raw type text, array length or None)]
        self.functions = {}  # name -> (raw return type, [raw parameter type], header)

    def resolve(self, text, depth=0):
        """A C type's text (`const char *const *`, `struct x`, `segment_id_t`) as a type tuple."""
        if depth > 20:
            raise ValueError(f"typedef loop at {text!r}")
        stars = text.count("*")
        words = [w for w in re.findall(r"[A-Za-z_]\w*", text) if w != "const"]
        base = " ".join(words)
        if len(words) == 2 and words[0] in ("struct", "union"):
            t = ("struct", words[1])
        elif base in C_BASE:
            t = C_BASE[base]
        elif base in self.typedefs:
            t = self.resolve(self.typedefs[base], depth + 1)
        else:
            raise ValueError(f"unknown C type {text!r}")
        for _ in range(stars):
            t = ptr(t)
        return t


def _split_declarator(text):
    """`const char *key` -> ("const char *", "key")."""
    m = re.fullmatch(r"(.*?)\b([A-Za-z_]\w*)\s*(?:\[(\d+)\])?", text.strip(), re.S)
    if not m or not m.group(1).strip():
        raise ValueError(f"cannot split declarator {text!r}")
    return m.group(1).strip(), m.group(2), int(m.group(3)) if m.group(3) else None


def _define_value(raw):
    v = raw.strip()
    while v.startswith("(") and v.endswith(")"):
        v = v[1:-1].strip()
    if v in C_LIMITS:
        return C_LIMITS[v]
    try:
        return int(v.rstrip("uUlL") or "x", 0)
    except ValueError:
        return raw.strip()


def parse_headers(texts):
    """`texts`: {header name: text}. Raises ValueError on anything it does not understand."""
    h = Headers()
    decls = []
    for header, text in texts.items():
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", " ", text)
        for m in re.finditer(r"^\s*#\s*define\s+(\w+)[ \t]+([^\n]+)$", text, re.M):
            h.defines[m.group(1)] = _define_value(m.group(2))
        text = re.sub(r"^\s*#[^\n]*$", " ", text, flags=re.M)
        text = re.sub(r'extern\s+"C"\s*\{', " ", text)
        text = re.sub(r"^\s*\}\s*$", " ", text, flags=re.M)  # the close of extern "C"

        def body(m):
            fields = []
            for field in m.group(3).split(";"):
                if field.strip():
                    fields.append(_split_declarator(" ".join(field.split())))
            h.structs[m.group(2)] = fields
            return " "

        text = re.sub(r"\b(struct|union)\s+(\w+)\s*\{(.*?)\}\s*;", body, text, flags=re.S)
        for stmt in text.split(";"):
            stmt = " ".join(stmt.split())
            if not stmt or re.fullmatch(r"(struct|union) \w+", stmt):
                continue  # forward declaration
            if stmt.startswith("typedef "):
                ty, name, _ = _split_declarator(stmt[len("typedef "):])
                h.typedefs[name] = ty
                continue
            m = re.fullmatch(r"(.+?)\b([A-Za-z_]\w*)\s*\((.*)\)", stmt)
            if not m:
                raise ValueError(f"{header}: cannot parse {stmt!r}")
            params = [p.strip() for p in m.group(3).split(",")]
            if params == ["void"] or params == [""]:
                params = []
            decls.append((header, m.group(2), m.group(1).strip(), [_split_declarator(p)[0] for p in params]))
    for header, name, ret, params in decls:
        if name in h.functions and h.functions[name][:2] != (ret, params):
            raise ValueError(f"{name} declared differently in {h.functions[name][2]} and {header}")
        h.functions[name] = (ret, params, header)
    return h


# ------------------------------------------------------------------------------------------------
# Python side


class Module:
    """The module-level names of one package module, from its syntax tree."""

    def __init__(self, name, source):
        self.name = name
        self.tree = ast.parse(source, filename=name)
        self.ctypes_names = {}   # local name -> ctypes name (from ctypes import X [as Y])
        self.relative = {}       # local name -> (module file, name) for `from .mod import name`
        self.assigns = {}        # name -> value node
        self.classes = {}        # name -> ClassDef
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "ctypes" and not node.level:
                for a in node.names:
                    self.ctypes_names[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                for a in node.names:
                    self.relative[a.asname or a.name] = (node.module + ".py", a.name)
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.assigns[node.targets[0].id] = node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
                self.assigns[node.target.id] = node.value
            elif isinstance(node, ast.ClassDef):
                self.classes[node.name] = node

    def is_structure(self, cls):
        return any(ast.unparse(b) in ("ctypes.Structure", "Structure") for b in cls.bases)

    def fields(self, cls):
        for node in cls.body:
            if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["_fields_"]:
                return [(ast.literal_eval(e.elts[0]), e.elts[1]) for e in node.value.elts]
        raise ValueError(f"{self.name}: {cls.name} has no _fields_")


class Package:
    def __init__(self, sources):
        self.modules = {name: Module(name, src) for name, src in sources.items()}

    def ctype(self, node, mod):
        """A ctypes expression (`c_int`, `POINTER(BufferEntry)`, an alias, `None`) as a type tuple."""
        m = self.modules[mod]
        if isinstance(node, ast.Constant) and node.value is None:
            return VOID
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "ctypes":
            return self._ctypes_name(node.attr, mod)
        if isinstance(node, ast.Name):
            if node.id in m.ctypes_names:
                return self._ctypes_name(m.ctypes_names[node.id], mod)
            if node.id in m.classes and m.is_structure(m.classes[node.id]):
                return ("pystruct", node.id, mod)
            if node.id in m.assigns:
                return self.ctype(m.assigns[node.id], mod)
            if node.id in m.relative and m.relative[node.id][0] in self.modules:
                other, name = m.relative[node.id]
                return self.ctype(ast.Name(id=name, ctx=ast.Load()), other)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and isinstance(node.right, ast.Constant):
            return ("array", self.ctype(node.left, mod), node.right.value)  # `c_char * 256`
        func = ast.unparse(node.func) if isinstance(node, ast.Call) else None
        if func in ("POINTER", "ctypes.POINTER") and len(node.args) == 1:
            if ast.unparse(node.func) == "POINTER" and m.ctypes_names.get("POINTER") != "POINTER":
                raise ValueError(f"{mod}: POINTER is not ctypes.POINTER")
            return ptr(self.ctype(node.args[0], mod))
        raise ValueError(f"{mod}: cannot evaluate the ctypes type {ast.unparse(node)!r}")

    @staticmethod
    def _ctypes_name(name, mod):
        if name not in CTYPES:
            raise ValueError(f"{mod}: ctypes.{name} is not in this test's table")
        return CTYPES[name]

    def prototypes(self):
        """{function: (module, restype, [argtypes])} of every module-level `_PROTOTYPES` table."""
        out = {}
        for mod, m in self.modules.items():
            table = m.assigns.get("_PROTOTYPES")
            if table is None:
                continue
            if not isinstance(table, ast.Dict):
                raise ValueError(f"{mod}: _PROTOTYPES is not a dict literal")
            for key, value in zip(table.keys, table.values):
                name = ast.literal_eval(key)
                if not (isinstance(value, ast.Tuple) and len(value.elts) == 2 and isinstance(value.elts[1], ast.List)):
                    raise ValueError(f"{mod}: {name}: not (restype, [argtypes])")
                restype, argtypes = value.elts
                out[name] = (mod, self.ctype(restype, mod), [self.ctype(a, mod) for a in argtypes.elts])
        return out

    def constant(self, mod, path):
        """The value of a module-level constant or a class attribute (`Class.attr`)."""
        m = self.modules[mod]
        if "." in path:
            cls, attr = path.split(".")
            for node in m.classes[cls].body:
                if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == [attr]:
                    return _const_eval(node.value)
            raise KeyError(path)
        return _const_eval(m.assigns[path])


def _const_eval(node):
    """An integer/string constant expression (literals and arithmetic only)."""
    allowed = (ast.Expression, ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop)
    expr = ast.Expression(body=node)
    for n in ast.walk(expr):
        if not isinstance(n, allowed):
            raise ValueError(f"not a constant expression: {ast.unparse(node)!r}")
    return eval(compile(expr, "<constant>", "eval"), {"__builtins__": {}})


# ------------------------------------------------------------------------------------------------
# The comparison


def compatible(py, c, structs=STRUCTS):
    """Whether a ctypes type (tuple) may stand for a C type (tuple)."""
    if py == ANY_POINTER:
        return c[0] == "ptr"
    if py[0] == "ptr":
        return c[0] == "ptr" and compatible(py[1], c[1], structs)
    if py[0] == "pystruct":
        return c == ("struct", structs.get(py[1]))
    return py == c


def check(header_texts, sources, structs=None, constants=None, exceptions=None, required=PROTOTYPE_MODULES):
    """Every mismatch between the package (`sources`: {module file: text}) and the headers, as
    a list of messages (empty: all agree)."""
    structs = STRUCTS if structs is None else structs
    constants = CONSTANTS if constants is None else constants
    exceptions = EXCEPTIONS if exceptions is None else exceptions
    headers = parse_headers(header_texts)
    pkg = Package(sources)
    problems = []
    used = set()

    def compare(where, key, py, c):
        if key in exceptions:
            want_py, want_c, _ = exceptions[key]
            used.add(key)
            if (py, c) == (want_py, want_c):
                return
            problems.append(f"{where}: the exception {key} is stale (ctypes {show(py)}, C {show(c)})")
            return
        if not compatible(py, c, structs):
            problems.append(f"{where}: ctypes {show(py)} vs C {show(c)}")

    protos = pkg.prototypes()
    for mod in required:
        if not any(m == mod for m, _, _ in protos.values()):
            problems.append(f"{mod}: no _PROTOTYPES table found")
    for name, (mod, restype, argtypes) in sorted(protos.items()):
        if name not in headers.functions:
            problems.append(f"{mod}: {name} is in no header")
            continue
        c_ret, c_params, header = headers.functions[name]
        where = f"{mod}: {name} ({header})"
        if len(argtypes) != len(c_params):
            problems.append(f"{where}: {len(argtypes)} argtypes, the header has {len(c_params)} parameters")
            continue
        compare(f"{where} return", (name, "return"), restype, headers.resolve(c_ret))
        for i, (py, c) in enumerate(zip(argtypes, c_params)):
            compare(f"{where} argument {i}", (name, i), py, headers.resolve(c))

    for mod, m in sorted(pkg.modules.items()):
        for cls_name, cls in sorted(m.classes.items()):
            if not m.is_structure(cls):
                continue
            c_name = structs.get(cls_name)
            if c_name is None or c_name not in headers.structs:
                problems.append(f"{mod}: Structure {cls_name} mirrors no known header struct ({c_name})")
                continue
            py_fields = m.fields(cls)
            c_fields = headers.structs[c_name]
            if [f for f, _ in py_fields] != [f for _, f, _ in c_fields]:
                problems.append(f"{mod}: {cls_name} fields {[f for f, _ in py_fields]} vs struct {c_name} "
                                f"{[f for _, f, _ in c_fields]}")
                continue
            for (field, node), (c_ty, _, n) in zip(py_fields, c_fields):
                c = headers.resolve(c_ty)
                if n is not None:
                    c = ("array", c, n)
                compare(f"{mod}: {cls_name}.{field}", (cls_name, field), pkg.ctype(node, mod), c)

    for (mod, path), define in sorted(constants.items()):
        if define not in headers.defines:
            problems.append(f"{mod}: {path}: no #define {define} in the headers")
            continue
        value = pkg.constant(mod, path)
        if value != headers.defines[define]:
            problems.append(f"{mod}: {path} = {value!r}, the header's {define} is {headers.defines[define]!r}")

    for key in sorted(set(exceptions) - used, key=str):
        problems.append(f"the exception {key} matches no declaration")
    return problems


def _read_dir(path, suffix):
    out = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(suffix):
            with open(os.path.join(path, name)) as f:
                out[name] = f.read()
    return out


# ------------------------------------------------------------------------------------------------
# The tests


def test_package_prototypes_structs_and_constants_match_the_headers():
    headers = _read_dir(INCLUDE, ".h")
    assert set(headers) >= {"transfer_engine_c.h", "store_c.h", "mooncake.h"}, sorted(headers)
    sources = _read_dir(PACKAGE, ".py")
    problems = check(headers, sources)
    assert not problems, "the package disagrees with include/*.h:\n  " + "\n  ".join(problems)
    # and it looked at something: both tables, every struct
    protos = Package(sources).prototypes()
    assert len(protos) > 50 and {"createTransferEngine", "mooncake_store_put_ex"} <= set(protos)


def test_the_parser_reads_every_header_declaration():
    h = parse_headers(_read_dir(INCLUDE, ".h"))
    assert h.resolve(h.functions["openSegment"][0]) == _int(32, True)
    assert [h.resolve(p) for p in h.functions["mooncake_cli_main"][1]] == [ptr(CHAR), _int(32, True), ptr(ptr(CHAR))]
    assert h.defines["INVALID_BATCH"] == (1 << 64) - 1 and h.defines["ERR_INVALID_ARGUMENT"] == -1
    fields = [f for _, f, _ in h.structs["transfer_request"]]
    assert fields == ["opcode", "source", "target_id", "target_offset", "length"]


# The checker fails on each kind of mismatch: one header, one module, one change at a time.

_HEADER = """
#define STATUS_DONE 4
#define NOT_FOUND (-704)
#define INVALID_BATCH UINT64_MAX
typedef void *engine_t;
typedef uint64_t batch_id_t;
struct entry {
  void *addr;
  size_t length;
};
typedef struct entry entry_t;
#ifdef __cplusplus
extern "C" {
#endif // __cplusplus
/**
 * A doc comment; with (parentheses);
 */
int submit(engine_t engine, batch_id_t batch_id, const entry_t *entries, size_t count);
const char *name_of(engine_t engine, int32_t code);
double load(engine_t engine);
void put(engine_t engine, const char *key, const void *value, size_t size);
#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus
"""

_MODULE = """
import ctypes
from ctypes import POINTER, c_char_p, c_double, c_int, c_int32, c_size_t, c_uint64, c_void_p

STATUS_DONE = 4
_INVALID = (1 << 64) - 1

class Entry(ctypes.Structure):
    _fields_ = [("addr", c_void_p), ("length", c_size_t)]

_ENTRIES = POINTER(Entry)

_PROTOTYPES = {
    "submit": (c_int, [c_void_p, c_uint64, _ENTRIES, c_size_t]),
    "name_of": (c_char_p, [c_void_p, c_int32]),
    "load": (c_double, [c_void_p]),
    "put": (None, [c_void_p, c_char_p, c_char_p, c_size_t]),
}
"""

_OPTIONS = dict(
    structs={"Entry": "entry"},
    constants={("m.py", "STATUS_DONE"): "STATUS_DONE", ("m.py", "_INVALID"): "INVALID_BATCH"},
    exceptions={("put", 2): (ptr(CHAR), ptr(VOID), "bytes by address")},
    required=("m.py",),
)


def _check_module(module, header=_HEADER, **options):
    return check({"t.h": header}, {"m.py": module}, **{**_OPTIONS, **options})


def test_the_sample_agrees():
    assert _check_module(_MODULE) == []


@pytest.mark.parametrize("old, new, message", [
    ('"submit": (c_int, [c_void_p, c_uint64, _ENTRIES, c_size_t])', '"submit": (c_int, [c_void_p, c_uint64, _ENTRIES])',
     "submit (t.h): 3 argtypes, the header has 4 parameters"),
    ('c_void_p, c_uint64, _ENTRIES', 'c_void_p, c_int, _ENTRIES',
     "submit (t.h) argument 1: ctypes int32_t vs C uint64_t"),            # integer width
    ('c_void_p, c_uint64, _ENTRIES', 'c_void_p, ctypes.c_int64, _ENTRIES',
     "submit (t.h) argument 1: ctypes int64_t vs C uint64_t"),            # signedness
    ('c_void_p, c_uint64, _ENTRIES', 'c_void_p, c_void_p, _ENTRIES',
     "submit (t.h) argument 1: ctypes any pointer vs C uint64_t"),        # pointer for an integer
    ('"load": (c_double, [c_void_p])', '"load": (c_uint64, [c_void_p])',
     "load (t.h) return: ctypes uint64_t vs C double"),                   # integer for a double
    ('"name_of": (c_char_p,', '"name_of": (c_int,', "name_of (t.h) return: ctypes int32_t vs C char *"),
    ('"put": (None,', '"put": (c_int,', "put (t.h) return: ctypes int32_t vs C void"),
    ('[c_void_p, c_char_p, c_char_p, c_size_t]', '[c_void_p, c_uint64, c_char_p, c_size_t]',
     "put (t.h) argument 1: ctypes uint64_t vs C char *"),                # integer for a char *
    ('[c_void_p, c_char_p, c_char_p, c_size_t]', '[c_void_p, c_char_p, c_void_p, c_size_t]',
     "the exception ('put', 2) is stale"),
    ('_ENTRIES = POINTER(Entry)', '_ENTRIES = POINTER(c_size_t)',
     "submit (t.h) argument 2: ctypes uint64_t * vs C struct entry *"),   # pointee
    ('_ENTRIES = POINTER(Entry)', '_ENTRIES = c_size_t',
     "submit (t.h) argument 2: ctypes uint64_t vs C struct entry *"),     # integer for a pointer
    ('("length", c_size_t)', '("length", c_int)', "Entry.length: ctypes int32_t vs C uint64_t"),
    ('("addr", c_void_p), ', '', "Entry fields ['length'] vs struct entry ['addr', 'length']"),
    ('"load": (', '"unload": (', "unload is in no header"),
    ('STATUS_DONE = 4', 'STATUS_DONE = 5', "STATUS_DONE = 5, the header's STATUS_DONE is 4"),
    ('_INVALID = (1 << 64) - 1', '_INVALID = (1 << 63) - 1', "_INVALID = 9223372036854775807"),
    ('_PROTOTYPES = {', '_OTHER = {', "m.py: no _PROTOTYPES table found"),
])
def test_the_check_fails_on_a_mismatch(old, new, message):
    assert old in _MODULE
    problems = _check_module(_MODULE.replace(old, new))
    assert any(message in p for p in problems), problems


def test_the_check_fails_on_a_changed_header():
    header = _HEADER.replace("double load(engine_t engine);", "double load(engine_t engine, int flags);")
    assert _check_module(_MODULE, header) == ["m.py: load (t.h): 1 argtypes, the header has 2 parameters"]
    header = _HEADER.replace("#define NOT_FOUND (-704)\n", "").replace("STATUS_DONE 4", "STATUS_DONE (-4)")
    assert _check_module(_MODULE, header) == ["m.py: STATUS_DONE = 4, the header's STATUS_DONE is -4"]


def test_the_check_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="unknown C type"):
        _check_module(_MODULE, _HEADER.replace("typedef uint64_t batch_id_t;", ""))
    with pytest.raises(ValueError, match="cannot evaluate"):
        _check_module(_MODULE.replace("c_void_p, c_uint64, _ENTRIES", "c_void_p, make_type(), _ENTRIES"))
    with pytest.raises(ValueError, match="not in this test's table"):
        _check_module(_MODULE.replace("c_void_p, c_uint64, _ENTRIES", "c_void_p, ctypes.c_wchar_p, _ENTRIES"))
