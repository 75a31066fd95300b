//! CEL for claim mappings and validation rules: the one module that uses the `cel` crate, so its
//! API changes between minor versions stay here.
//!
//! The environment is the crate's standard library (macros `has`, `all`, `exists`,
//! `exists_one`, `map`, `filter`; optional syntax `claims.?x.orValue(d)`, `claims[?"k"]`) plus
//! its strings and lists extensions and cel-go's `sets` functions, registered here. Field names
//! that CEL cannot select are reached the Kubernetes way, through escaped aliases
//! (`__dot__`, `__dash__`, `__slash__`, `__underscores__`, `__reserved__`).

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use cel::ExecutionError;
use cel::IdedExpr;
use cel::common::ast::{CallExpr, EntryExpr, Expr, LiteralValue};
use cel::common::types::{CelBool, CelDouble, CelList, CelMap, CelMapKey, CelNull, CelString, LIST_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{Context, Env, Program};
use serde_json::{Map, Value};

/// CEL keywords and reserved words, which Kubernetes writes as `__word__` in field selections.
const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "package",
    "namespace",
    "null",
    "return",
    "true",
    "var",
    "void",
    "while",
];

/// The compiled environment shared by every expression of a configuration.
pub struct Cel {
    env: Arc<Env>,
}

/// One compiled expression and its source (for messages).
pub struct Expression {
    source: String,
    program: Program,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expression({:?})", self.source)
    }
}

impl Expression {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the source mentions `claims.<name>` (plain or optional select) or
    /// `claims["<name>"]`: Kubernetes' syntactic check for `email` and `email_verified`.
    pub fn references_claim(&self, name: &str) -> bool {
        let s = &self.source;
        [
            format!("claims.{name}"),
            format!("claims.?{name}"),
            format!("claims[\"{name}\"]"),
            format!("claims['{name}']"),
        ]
        .iter()
        .any(|pattern| {
            s.match_indices(pattern.as_str()).any(|(i, m)| {
                let next = s[i + m.len()..].chars().next();
                !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
    }
}

impl Cel {
    /// The environment.
    pub fn new() -> Result<Cel, String> {
        let mut env = Env::stdlib();
        let declare = |e: Result<(), cel::DeclarationError>| e.map_err(|e| format!("CEL setup: {e:?}"));
        declare(env.add_extension(cel::extensions::strings))?;
        declare(env.add_extension(cel::extensions::lists))?;
        for (name, f) in [
            ("sets.contains", sets_contains as cel::common::functions::Function),
            ("sets.equivalent", sets_equivalent),
            ("sets.intersects", sets_intersects),
        ] {
            declare(env.add_overload(name, &format!("{name}(list,list)"), vec![LIST_TYPE, LIST_TYPE], f))?;
        }
        Ok(Cel { env: Arc::new(env) })
    }

    /// Parses an expression. The crate has no type checker: callers also evaluate it against
    /// sample input to catch type errors at load.
    pub fn compile(&self, source: &str) -> Result<Expression, String> {
        let program = self.env.compile(source).map_err(|e| format!("does not compile: {e}"))?;
        Ok(Expression { source: source.to_string(), program })
    }

    /// [`Cel::compile`], then checks every name the expression uses: each identifier must be
    /// one of `variables`, a comprehension variable in scope, or a type; each function one the
    /// environment provides. The crate only finds out at evaluation, with the first token, and
    /// a typo such as `claim.email` would reject every user instead of failing at load.
    pub fn compile_with(&self, source: &str, variables: &[&str]) -> Result<Expression, String> {
        let expression = self.compile(source)?;
        let mut scope: Vec<&str> = variables.to_vec();
        self.check_names(expression.program.expression(), &mut scope, variables)?;
        Ok(expression)
    }

    fn check_names<'e>(&self, e: &'e IdedExpr, scope: &mut Vec<&'e str>, variables: &[&str]) -> Result<(), String> {
        match &e.expr {
            Expr::Ident(name) => self.check_ident(name, scope, variables),
            Expr::Select(select) => {
                // `a.b.c` with `a` not a variable can still name a type.
                let not_a_variable = |q: &String| !scope.contains(&root(q));
                if let Some(name) = qualified_name(e).filter(not_a_variable)
                    && self.env.types().find_type(&name).is_some()
                {
                    return Ok(());
                }
                // A type is a value without fields: `string.foo` is a mistake, not a claim.
                if let Some(operand) = qualified_name(&select.operand).filter(not_a_variable)
                    && self.env.types().find_type(&operand).is_some()
                {
                    return Err(format!("selects {:?} on the type {operand:?}, which has no fields", select.field));
                }
                self.check_names(&select.operand, scope, variables)
            }
            Expr::Call(call) => {
                // Operators and macro internals (`_+_`, `@in`, `_?._`) come from the parser, which
                // spells no other name so; a name a user wrote (even `_foo`) must be declared.
                let written = !PARSER_OPERATORS.contains(&call.func_name.as_str());
                match &call.target {
                    // `sets.contains(a, b)`, `optional.of(x)`: a qualified global function.
                    Some(target)
                        if qualified_name(target).is_some_and(|q| {
                            !scope.contains(&root(&q)) && self.declared(&format!("{q}.{}", call.func_name), false)
                        }) => {}
                    // `math.greatest(a, b)`: a qualified name that is no variable, and no function.
                    Some(target) if let Some(q) = qualified_name(target).filter(|q| !scope.contains(&root(q))) => {
                        return Err(format!(
                            "calls an unknown function \"{q}.{}\" ({:?} is not a variable here)",
                            call.func_name,
                            root(&q)
                        ));
                    }
                    Some(target) => {
                        self.check_names(target, scope, variables)?;
                        if written && !self.declared(&call.func_name, true) {
                            return Err(format!("calls an unknown method {:?}", call.func_name));
                        }
                    }
                    None if written && !self.declared(&call.func_name, false) => {
                        return Err(format!("calls an unknown function {:?}", call.func_name));
                    }
                    None => {}
                }
                call.args.iter().try_for_each(|a| self.check_names(a, scope, variables))
            }
            Expr::Comprehension(c) => {
                self.check_names(&c.iter_range, scope, variables)?;
                self.check_names(&c.accu_init, scope, variables)?;
                let outer = scope.len();
                scope.push(&c.accu_var);
                self.check_names(&c.result, scope, variables)?;
                scope.push(&c.iter_var);
                scope.extend(c.iter_var2.as_deref());
                let inner = self.check_names(&c.loop_cond, scope, variables);
                let inner = inner.and_then(|()| self.check_names(&c.loop_step, scope, variables));
                scope.truncate(outer);
                inner
            }
            Expr::List(list) => list.elements.iter().try_for_each(|x| self.check_names(x, scope, variables)),
            Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
                EntryExpr::MapEntry(m) => {
                    self.check_names(&m.key, scope, variables)?;
                    self.check_names(&m.value, scope, variables)
                }
                EntryExpr::StructField(f) => self.check_names(&f.value, scope, variables),
            }),
            Expr::Struct(s) => {
                Err(format!("constructs {:?}, a message type this environment does not have", s.type_name))
            }
            Expr::Literal(_) | Expr::Unspecified => Ok(()),
        }
    }

    fn check_ident(&self, name: &str, scope: &[&str], variables: &[&str]) -> Result<(), String> {
        if name.starts_with('@') || scope.contains(&name) || self.env.types().find_type(name).is_some() {
            return Ok(());
        }
        let names: Vec<String> = variables.iter().map(|v| format!("`{v}`")).collect();
        Err(format!("uses {name:?}, which is not defined here (the variables are {})", names.join(", ")))
    }

    /// Whether a function (`member`: a method) of that name exists. The environment does not
    /// list its functions, so this asks it the way evaluation does: a call to the name with no
    /// arguments (on `null` for a method) fails with "undeclared reference" only when there is
    /// no such function; an existing one fails for its arguments, or runs (functions are pure).
    fn declared(&self, name: &str, member: bool) -> bool {
        let node = |expr| IdedExpr { id: 0, expr };
        let target = member.then(|| Box::new(node(Expr::Literal(LiteralValue::Null))));
        let probe = node(Expr::Call(CallExpr { func_name: name.to_string(), target, args: Vec::new() }));
        let context = Context::with_env(Arc::clone(&self.env));
        !matches!(cel::Value::resolve(&probe, &context), Err(ExecutionError::UndeclaredReference(_)))
    }

    /// Binds one variable to `value` (a JSON object whose keys also get their escaped aliases)
    /// for any number of expressions: the value is converted for CEL once, at the first
    /// evaluation, and then shared by all of them.
    pub fn activation<'a>(&'a self, variable: &'a str, value: &'a Map<String, Value>) -> Activation<'a> {
        Activation { env: &self.env, variable, value, context: OnceCell::new() }
    }

    /// Evaluates one expression with one variable bound to `value` and returns the result as
    /// JSON. To evaluate several against the same value, use [`Cel::activation`].
    pub fn evaluate(
        &self,
        expression: &Expression,
        variable: &str,
        value: &Map<String, Value>,
    ) -> Result<Value, String> {
        self.activation(variable, value).evaluate(expression)
    }
}

/// One variable (`claims`, or `user` for the user validation rules) bound for all the
/// expressions of one review.
///
/// NB: converting the value for CEL costs more than evaluating a simple expression, and it used
/// to be done for each expression: expressions × claims size per review. It is done at the first
/// [`Activation::evaluate`], not before, so a mapping without expressions never pays it, and a
/// value CEL refuses (a list longer than [`MAX_LIST_LEN`]) fails every expression evaluated
/// against it, with the same message, and nothing else, as before.
pub struct Activation<'a> {
    env: &'a Arc<Env>,
    variable: &'a str,
    value: &'a Map<String, Value>,
    context: OnceCell<Result<Context<'a, 'a>, String>>,
}

impl<'a> Activation<'a> {
    /// Evaluates `expression` and returns the result as JSON.
    pub fn evaluate(&self, expression: &Expression) -> Result<Value, String> {
        let context = self.context.get_or_init(|| self.bind()).as_ref().map_err(String::clone)?;
        let result = expression.program.execute(context).map_err(|e| e.to_string())?;
        result.json().map_err(|e| format!("the result is not JSON-like: {e:?}"))
    }

    fn bind(&self) -> Result<Context<'a, 'a>, String> {
        let mut context = Context::with_env(Arc::clone(self.env));
        context.add_variable_as_val(self.variable, with_escaped_aliases(self.value)?);
        Ok(context)
    }
}

/// Prepares a JSON object for CEL as Kubernetes does: every number is a double (claims are
/// decoded as JSON, where a number is a float64), and each key CEL cannot select directly also
/// gets the alias Kubernetes' escaping gives it, at every level of nesting.
///
/// The CEL values are built directly and borrow the JSON's strings. They are the ones the
/// crate's own conversion (`Context::add_variable` of an escaped copy of the JSON) builds, which
/// copies every string twice more on the way, through its `Value` enum.
///
/// NB: this is also where evaluation cost is bounded. The crate has no cost model, and the
/// expensive expressions are comprehensions (`exists`, `map`, `filter`, nested) over lists, so
/// a value with a list longer than [`MAX_LIST_LEN`] is refused: the expression fails and the
/// token is rejected. With JSON depth capped by serde_json (128) and strings matched by a
/// linear-time regex engine, one evaluation stays bounded by about `MAX_LIST_LEN`² steps.
fn with_escaped_aliases(map: &Map<String, Value>) -> Result<Box<dyn Val + '_>, String> {
    let mut out: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = HashMap::with_capacity(map.len());
    for (key, value) in map {
        let value = as_cel_value(value)?;
        if let Some(alias) = escaped(key)
            && !map.contains_key(&alias)
        {
            out.insert(CelMapKey::from(alias), value.clone_as_boxed());
        }
        out.insert(CelMapKey::from(key.as_str()), value);
    }
    Ok(Box::new(CelMap::from(out)))
}

/// The longest list an expression may iterate over.
pub const MAX_LIST_LEN: usize = 4096;

fn as_cel_value(value: &Value) -> Result<Box<dyn Val + '_>, String> {
    Ok(match value {
        Value::Object(inner) => with_escaped_aliases(inner)?,
        Value::Array(items) if items.len() > MAX_LIST_LEN => {
            return Err(format!(
                "a list of {} values is longer than the {MAX_LIST_LEN} expressions may use",
                items.len()
            ));
        }
        Value::Array(items) => Box::new(CelList::from(items.iter().map(as_cel_value).collect::<Result<Vec<_>, _>>()?)),
        // A number that is not finite (JSON text has none) is null, as serde_json makes it.
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => Box::new(CelDouble::from(f)),
            _ => Box::new(CelNull),
        },
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Null => Box::new(CelNull),
    })
}

/// The functions the parser writes for operators and macros: only it can spell these names.
const PARSER_OPERATORS: [&str; 21] = {
    use cel::common::ast::operators::*;
    [
        CONDITIONAL,
        LOGICAL_AND,
        LOGICAL_OR,
        LOGICAL_NOT,
        SUBSTRACT,
        ADD,
        MULTIPLY,
        DIVIDE,
        MODULO,
        EQUALS,
        NOT_EQUALS,
        GREATER_EQUALS,
        LESS_EQUALS,
        GREATER,
        LESS,
        NEGATE,
        INDEX,
        OPT_INDEX,
        OPT_SELECT,
        NOT_STRICTLY_FALSE,
        IN,
    ]
};

/// `a.b.c` for an identifier or a chain of plain selects on one.
fn qualified_name(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(s) if !s.test => Some(format!("{}.{}", qualified_name(&s.operand)?, s.field)),
        _ => None,
    }
}

fn root(qualified: &str) -> &str {
    qualified.split('.').next().unwrap_or(qualified)
}

/// Kubernetes' (cel-go's) escaping of a field name, when it needs one.
fn escaped(key: &str) -> Option<String> {
    if RESERVED.contains(&key) {
        return Some(format!("__{key}__"));
    }
    if !key.contains(['.', '-', '/']) && !key.contains("__") {
        return None;
    }
    Some(
        key.replace("__", "__underscores__").replace('.', "__dot__").replace('-', "__dash__").replace('/', "__slash__"),
    )
}

fn two<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<[CowVal<'b, 'v>; 2], ExecutionError> {
    let n = args.len();
    args.try_into().map_err(|_| ExecutionError::invalid_argument_count(2, n))
}

fn items<'b, 'v>(list: &'b (dyn Val + 'v)) -> Result<Vec<&'b (dyn Val + 'v)>, ExecutionError> {
    let iterable = list.as_iterable().ok_or_else(|| ExecutionError::function_error("sets", "expects lists"))?;
    let mut it = iterable.iter();
    let mut out = Vec::new();
    while let Some(v) = it.next() {
        out.push(v);
    }
    Ok(out)
}

fn contains_all(a: &[&dyn Val], b: &[&dyn Val]) -> bool {
    b.iter().all(|x| a.iter().any(|y| x.equals(*y)))
}

fn boolean<'b, 'v>(b: bool) -> CowVal<'b, 'v> {
    CowVal::owned(CelBool::from(b))
}

fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = two(args)?;
    Ok(boolean(contains_all(&items(a.as_ref())?, &items(b.as_ref())?)))
}

fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = two(args)?;
    let (a, b) = (items(a.as_ref())?, items(b.as_ref())?);
    Ok(boolean(contains_all(&a, &b) && contains_all(&b, &a)))
}

fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = two(args)?;
    let (a, b) = (items(a.as_ref())?, items(b.as_ref())?);
    Ok(boolean(b.iter().any(|x| a.iter().any(|y| x.equals(*y)))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(source: &str, claims: Value) -> Result<Value, String> {
        let cel = Cel::new().unwrap();
        let e = cel.compile(source)?;
        cel.evaluate(&e, "claims", claims.as_object().unwrap())
    }

    #[test]
    fn the_kubernetes_documentation_examples_evaluate() {
        let claims = json!({"sub": "alice", "email": "Alice@Example.com", "email_verified": true,
            "groups": ["dev", "ops"], "hd": "example.com", "exp": 2000000000, "iat": 1999996400,
            "aud": ["a", "b"], "roles": "a,b"});
        for (source, want) in [
            ("'oidc:' + claims.sub", json!("oidc:alice")),
            ("claims.email.lowerAscii()", json!("alice@example.com")),
            ("claims.?email_verified.orValue(true) == true", json!(true)),
            ("has(claims.groups) ? claims.groups.map(g, 'x:' + g) : []", json!(["x:dev", "x:ops"])),
            ("claims.groups.filter(g, g.startsWith('d'))", json!(["dev"])),
            ("claims.exp > 1000000000", json!(true)),
            ("claims.exp - claims.iat <= 86400", json!(true)),
            ("claims.roles.split(',')", json!(["a", "b"])),
            ("claims.groups.all(g, !g.startsWith('system:'))", json!(true)),
            ("claims.exp == 2000000000.0", json!(true)),
            ("string(int(claims.exp))", json!("2000000000")),
            ("sets.contains(claims.aud, ['a'])", json!(true)),
            ("sets.equivalent(claims.aud, ['b', 'a'])", json!(true)),
            ("sets.intersects(claims.aud, ['c', 'b'])", json!(true)),
            ("sets.intersects(claims.aud, ['c'])", json!(false)),
            ("claims.groups.exists(g, g == 'ops')", json!(true)),
            ("claims.email.split('@')[1]", json!("Example.com")),
            ("claims[?'missing'].orValue('none')", json!("none")),
            ("claims.groups.join(',')", json!("dev,ops")),
            ("claims.email.matches('@Example\\\\.com$')", json!(true)),
            ("claims.email.lowerAscii().endsWith('@example.com')", json!(true)),
        ] {
            assert_eq!(eval(source, claims.clone()), Ok(want), "{source}");
        }
    }

    #[test]
    fn a_missing_claim_is_an_error_not_false() {
        assert!(eval("claims.nope == 'x'", json!({})).is_err());
        assert_eq!(eval("has(claims.nope)", json!({})), Ok(json!(false)));
    }

    #[test]
    fn awkward_claim_names_are_reached_through_kubernetes_escapes() {
        let claims = json!({"kubernetes.io": {"namespace": "ns1"}, "my-claim": "a", "x/y": "b",
            "a__b": "c", "namespace": "d"});
        for (source, want) in [
            ("claims.kubernetes__dot__io.__namespace__", json!("ns1")),
            ("claims['kubernetes.io']['namespace']", json!("ns1")),
            ("claims.my__dash__claim", json!("a")),
            ("claims.x__slash__y", json!("b")),
            ("claims.a__underscores__b", json!("c")),
            ("claims.__namespace__", json!("d")),
            ("has(claims.kubernetes__dot__io)", json!(true)),
        ] {
            assert_eq!(eval(source, claims.clone()), Ok(want), "{source}");
        }
    }

    #[test]
    fn lists_longer_than_the_cost_bound_make_the_expression_fail() {
        let long: Vec<String> = (0..=MAX_LIST_LEN).map(|i| format!("g{i}")).collect();
        let err = eval("claims.groups.exists(a, claims.groups.exists(b, a == b + 'x'))", json!({"groups": long}));
        assert!(err.unwrap_err().contains("longer than"));
        let fine: Vec<String> = (0..MAX_LIST_LEN).map(|i| format!("g{i}")).collect();
        assert_eq!(eval("claims.groups.size()", json!({"groups": fine})), Ok(json!(4096)));
    }

    #[test]
    fn expressions_sharing_an_activation_each_get_what_a_fresh_binding_gives() {
        let cel = Cel::new().unwrap();
        let claims = json!({"kubernetes.io": {"namespace": "ns1", "my-id": "x"}, "my-claim": "a", "sub": "s",
            "groups": ["g1", "g2"], "n": 3});
        let claims = claims.as_object().unwrap();
        let shared = cel.activation("claims", claims);
        for source in [
            "claims.kubernetes__dot__io.__namespace__",
            "claims.my__dash__claim",
            // A failing expression does not spoil the binding for the next ones.
            "claims.nope",
            "claims.kubernetes__dot__io.my__dash__id + claims.my__dash__claim",
            "claims['kubernetes.io'].namespace",
            "claims.groups.map(g, g + claims.my__dash__claim)",
            "claims.n + 1.0",
            "has(claims.kubernetes__dot__io.my__dash__id)",
            "claims.kubernetes__dot__io.__namespace__",
            "has(claims.email) && claims.?groups.orValue([]).size() >= 0 && claims[?'k'].orValue('') == ''",
            "-claims.exp < 0 && !(claims.exp % 2 == 0) ? claims.groups[0] : 'x' in claims.groups ? 'a' : 'b'",
            "claims.sub.charAt(0) + claims.sub.substring(1) + string(claims.sub.lastIndexOf('a'))",
        ] {
            let e = cel.compile(source).unwrap();
            let fresh = cel.activation("claims", claims).evaluate(&e);
            assert_eq!(shared.evaluate(&e), fresh, "{source}");
        }
        let e = cel.compile("claims.kubernetes__dot__io.__namespace__ + claims.my__dash__claim").unwrap();
        assert_eq!(shared.evaluate(&e), Ok(json!("ns1a")));
        assert!(shared.evaluate(&cel.compile("claims.nope").unwrap()).is_err());
    }

    #[test]
    fn an_activation_binds_only_its_own_variable() {
        let cel = Cel::new().unwrap();
        let user = json!({"username": "u"});
        let user = cel.activation("user", user.as_object().unwrap());
        assert_eq!(user.evaluate(&cel.compile("user.username").unwrap()), Ok(json!("u")));
        assert!(user.evaluate(&cel.compile("claims.sub").unwrap()).is_err());
    }

    #[test]
    fn a_list_over_the_cost_bound_fails_every_expression_of_the_activation() {
        let cel = Cel::new().unwrap();
        let long: Vec<String> = (0..=MAX_LIST_LEN).map(|i| format!("g{i}")).collect();
        let claims = json!({"sub": "a", "groups": long});
        let shared = cel.activation("claims", claims.as_object().unwrap());
        for source in ["claims.sub", "claims.groups.size()", "true"] {
            let err = shared.evaluate(&cel.compile(source).unwrap()).unwrap_err();
            assert!(err.contains("longer than"), "{source}: {err}");
        }
    }

    /// The conversion this module did before it built CEL values itself: an escaped copy of the
    /// JSON, for the crate to convert (`Context::add_variable`).
    fn escaped_copy(map: &Map<String, Value>) -> Value {
        let mut out = Map::new();
        for (key, value) in map {
            let value = copied(value);
            if let Some(alias) = escaped(key)
                && !map.contains_key(&alias)
            {
                out.insert(alias, value.clone());
            }
            out.insert(key.clone(), value);
        }
        Value::Object(out)
    }

    fn copied(value: &Value) -> Value {
        match value {
            Value::Object(inner) => escaped_copy(inner),
            Value::Array(items) => Value::Array(items.iter().map(copied).collect()),
            Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
            other => other.clone(),
        }
    }

    #[test]
    fn claims_convert_to_what_the_crate_makes_of_the_escaped_json() {
        let cel = Cel::new().unwrap();
        let claims = json!({
            "sub": "alice", "email_verified": true, "nothing": null, "n": 3, "neg": -7, "f": 1.5,
            "big": 1e300, "u": u64::MAX, "empty": {}, "none": [], "émoji 🙂": "ü",
            "kubernetes.io": {"namespace": "ns1", "service-account": {"x/y": [1, "a", null, {"in": "var"}]}},
            "a.b": "dotted", "a__dot__b": "spelled", "my-claim": "a", "x/y": "b", "a__b": "c", "if": "kw",
            "groups": ["dev", "ops", ["nested", {"k.l": 2}]],
        });
        let claims = claims.as_object().unwrap();
        let mut context = Context::with_env(Arc::clone(&cel.env));
        context.add_variable_as_val("ours", with_escaped_aliases(claims).unwrap());
        context.add_variable("crates", escaped_copy(claims)).unwrap();
        let run = |source: &str| cel.compile(source).unwrap().program.execute(&context).unwrap().json().unwrap();
        assert_eq!(run("ours == crates"), json!(true));
        assert_eq!(run("ours"), run("crates"));
        assert_eq!(run("ours").as_object().unwrap().len(), claims.len() + 6, "all but a.b get an alias");
        for field in ["n", "big", "u", "f"] {
            assert_eq!(run(&format!("type(ours.{field}) == double")), json!(true), "{field}");
        }
        assert_eq!(run("ours.a__dot__b"), json!("spelled"), "a claim wins over another claim's alias");
    }

    #[test]
    fn undeclared_names_and_functions_are_refused_at_compile() {
        let cel = Cel::new().unwrap();
        for (source, want) in [
            ("claim.email", "uses \"claim\", which is not defined here (the variables are `claims`)"),
            ("foo.bar == 'x'", "uses \"foo\""),
            ("claims.groups.map(g, h)", "uses \"h\""),
            ("claims.groups.map(g, g) + [g]", "uses \"g\""),
            ("has(user.username)", "uses \"user\""),
            ("lowerAscii(claims.email)", "calls an unknown function \"lowerAscii\""),
            ("claims.email.lowerascii()", "calls an unknown method \"lowerascii\""),
            ("claims.email.string()", "calls an unknown method \"string\""),
            ("sets.union(claims.aud, ['a'])", "calls an unknown function \"sets.union\""),
            ("math.greatest(1, 2)", "calls an unknown function \"math.greatest\""),
            ("_lowerAscii(claims.sub)", "calls an unknown function \"_lowerAscii\""),
            ("claims.sub._foo()", "calls an unknown method \"_foo\""),
            ("string.foo == 'x'", "selects \"foo\" on the type \"string\""),
            ("has(string.foo)", "selects \"foo\" on the type \"string\""),
            ("[claims.sub].exists(x, x == nope)", "uses \"nope\""),
            ("{'k': claims.sub, 'v': unknown}", "uses \"unknown\""),
            ("Msg{field: 1}", "constructs \"Msg\""),
        ] {
            let err = cel.compile_with(source, &["claims"]).unwrap_err();
            assert!(err.starts_with(want), "{source}: {err}");
        }
    }

    #[test]
    fn every_name_the_environment_has_passes_the_check() {
        let cel = Cel::new().unwrap();
        for source in [
            "claims.email.lowerAscii().endsWith('@example.com') && claims.email_verified",
            "has(claims.groups) ? claims.groups.map(g, 'x:' + g) : []",
            "claims.groups.filter(g, g.startsWith('d')).all(g, size(g) > 0)",
            "claims.groups.exists_one(g, g == 'ops') || claims.groups.exists(g, g in ['a'])",
            "claims.?email_verified.orValue(true) == true && claims[?'x'].hasValue() == false",
            "sets.contains(claims.aud, ['a']) && sets.equivalent(claims.aud, ['a']) && sets.intersects(claims.aud, ['a'])",
            "string(int(claims.exp)) + string(double(1)) + string(uint(1))",
            "type(claims.sub) == string && type(claims.exp) == double && type(claims.groups) == list",
            "claims.roles.split(',').join(' ') + claims.sub.replace('a', 'b').trim().upperAscii()",
            "claims.email.matches('^a') && claims.sub.contains('a') && claims.sub.indexOf('a') >= 0",
            "optional.of(claims.sub).orValue('') + optional.none().orValue('')",
            "[[1], [2]].map(x, x.map(y, y + 1)) == [[2], [3]]",
            "{'a': claims.sub}.a == claims.sub && dyn(claims.sub) == claims.sub",
            "claims.kubernetes__dot__io.__namespace__",
            "has(claims.email) && claims.?groups.orValue([]).size() >= 0 && claims[?'k'].orValue('') == ''",
            "-claims.exp < 0 && !(claims.exp % 2 == 0) ? claims.groups[0] : 'x' in claims.groups ? 'a' : 'b'",
            "claims.sub.charAt(0) + claims.sub.substring(1) + string(claims.sub.lastIndexOf('a'))",
        ] {
            assert!(
                cel.compile_with(source, &["claims"]).is_ok(),
                "{source}: {:?}",
                cel.compile_with(source, &["claims"]).err()
            );
        }
        assert!(cel.compile_with("user.username.startsWith('a')", &["user"]).is_ok());
    }

    #[test]
    fn syntax_errors_are_reported_at_compile() {
        let cel = Cel::new().unwrap();
        assert!(cel.compile("claims.sub +").unwrap_err().starts_with("does not compile"));
    }

    #[test]
    fn the_email_reference_check_is_syntactic_and_exact() {
        let cel = Cel::new().unwrap();
        let refs = |s: &str, name: &str| cel.compile(s).unwrap().references_claim(name);
        assert!(refs("claims.email", "email"));
        assert!(refs("claims.?email.orValue('')", "email"));
        assert!(refs("claims['email']", "email"));
        assert!(!refs("claims.email_verified == true", "email"));
        assert!(refs("claims.email_verified == true", "email_verified"));
    }
}
