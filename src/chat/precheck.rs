//! Checks a template's source before minijinja compiles it. Two costs arise at compile
//! time, before any fuel is spent, and both were reached with small templates:
//!
//! * **depth**: the parser builds `a - b - c …`, `x|f|g …`, `a.b.c …` as left-deep trees
//!   without a depth limit, and the compiler and the tree's destructor recurse through
//!   them: `{{ 1-1-1…}}` with 30,000 operators (a 60 KB template) overflows an 8 MiB stack
//!   and aborts the process. Every `{{ … }}` / `{% … %}` tag may hold at most
//!   [`MAX_TAG_TOKENS`] tokens, counted by minijinja's own lexer (which does not recurse),
//!   which bounds every expression's depth.
//! * **constant folding**: the compiler evaluates constant sub-expressions, and evaluates
//!   them again at every level of an expression that does not fold, so
//!   `{{ 0 - 'x' * 99999999 - 1 - 1 … }}` builds a 100 MB string once per operator: 25 s
//!   for 664 bytes of template (found by the chat_template fuzzer), and concatenating such
//!   strings (`~`) exhausts memory. The parsed tree is walked once, bottom-up, with an
//!   upper bound on the size of every value that folding would build; a template where one
//!   exceeds [`MAX_FOLDED`] bytes is refused.
//!
//! Real templates (the 71 of llama.cpp's `models/templates`, see tests/chat_templates.rs)
//! stay far below both limits.

use minijinja::machinery::ast::{BinOpKind, CallArg, Expr, Stmt, UnaryOpKind};
use minijinja::machinery::{parse, tokenize, Token, WhitespaceConfig};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::ValueKind;

/// Tokens one `{{ … }}` or `{% … %}` tag may hold.
pub const MAX_TAG_TOKENS: usize = 1_000;
/// Bytes a constant expression may fold to (a string, or a list's text).
pub const MAX_FOLDED: u64 = 64 << 10;

/// What folding an expression can give, as far as cost is concerned.
#[derive(Clone, Copy)]
enum Folded {
    /// An integer, exactly.
    Int(i128),
    /// A number, boolean or none: at most 64 bytes of text.
    Small,
    /// A string of at most this many bytes.
    Str(u64),
    /// A list (possibly a lazy repetition) whose text takes at most this many bytes.
    Seq(u64),
}

impl Folded {
    /// The most bytes its text (`~`, `string`) can take.
    fn text(self) -> u64 {
        match self {
            Folded::Int(_) | Folded::Small => 64,
            Folded::Str(n) | Folded::Seq(n) => n,
        }
    }
}

/// Refuses a template whose tags are too long or whose constants fold too big. Syntax
/// errors are left to minijinja, which reports them with the line.
pub fn check(source: &str) -> Result<(), String> {
    let ws = WhitespaceConfig { keep_trailing_newline: false, lstrip_blocks: true, trim_blocks: true };
    let mut in_tag = 0usize;
    for tok in tokenize(source, false, SyntaxConfig::default(), ws) {
        let Ok((tok, span)) = tok else { return Ok(()) };
        match tok {
            Token::VariableStart | Token::BlockStart => in_tag = 1,
            Token::VariableEnd | Token::BlockEnd | Token::TemplateData(_) => in_tag = 0,
            _ if in_tag > 0 => {
                in_tag += 1;
                if in_tag > MAX_TAG_TOKENS {
                    return Err(format!(
                        "chat template error: the tag on line {} holds more than {MAX_TAG_TOKENS} tokens \
                         (a limit of clex: such expressions nest deeper than the template engine can compile)",
                        span.start_line
                    ));
                }
            }
            _ => {}
        }
    }
    let Ok(ast) = parse(source, "chat_template", SyntaxConfig::default(), ws) else { return Ok(()) };
    stmt(&ast)
}

fn stmts(s: &[Stmt]) -> Result<(), String> {
    s.iter().try_for_each(stmt)
}

fn exprs<'a>(e: impl IntoIterator<Item = &'a Expr<'a>>) -> Result<(), String> {
    e.into_iter().try_for_each(|e| expr(e).map(drop))
}

fn args(a: &[CallArg]) -> Result<(), String> {
    a.iter().try_for_each(|a| match a {
        CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => expr(e).map(drop),
    })
}

fn stmt(s: &Stmt) -> Result<(), String> {
    match s {
        Stmt::Template(t) => stmts(&t.children),
        Stmt::EmitExpr(e) => expr(&e.expr).map(drop),
        Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => Ok(()),
        Stmt::ForLoop(f) => {
            exprs([&f.target, &f.iter])?;
            exprs(&f.filter_expr)?;
            stmts(&f.body)?;
            stmts(&f.else_body)
        }
        Stmt::IfCond(c) => {
            expr(&c.expr)?;
            stmts(&c.true_body)?;
            stmts(&c.false_body)
        }
        Stmt::WithBlock(w) => {
            w.assignments.iter().try_for_each(|(a, b)| exprs([a, b]))?;
            stmts(&w.body)
        }
        Stmt::Set(s) => exprs([&s.target, &s.expr]),
        Stmt::SetBlock(s) => {
            expr(&s.target)?;
            exprs(&s.filter)?;
            stmts(&s.body)
        }
        Stmt::AutoEscape(a) => {
            expr(&a.enabled)?;
            stmts(&a.body)
        }
        Stmt::FilterBlock(f) => {
            expr(&f.filter)?;
            stmts(&f.body)
        }
        Stmt::Block(b) => stmts(&b.body),
        Stmt::Import(i) => exprs([&i.expr, &i.name]),
        Stmt::FromImport(i) => {
            expr(&i.expr)?;
            i.names.iter().try_for_each(|(a, b)| {
                expr(a)?;
                exprs(b)
            })
        }
        Stmt::Extends(e) => expr(&e.name).map(drop),
        Stmt::Include(i) => expr(&i.name).map(drop),
        Stmt::Macro(m) => {
            exprs(&m.args)?;
            exprs(&m.defaults)?;
            stmts(&m.body)
        }
        Stmt::CallBlock(c) => {
            expr(&c.call.expr)?;
            args(&c.call.args)?;
            exprs(&c.macro_decl.args)?;
            exprs(&c.macro_decl.defaults)?;
            stmts(&c.macro_decl.body)
        }
        Stmt::Do(d) => {
            expr(&d.call.expr)?;
            args(&d.call.args)
        }
    }
}

/// Visits `e` and its children; returns what `e` folds to (`None`: it is not constant,
/// by the rules of minijinja's `Expr::as_const`), refusing any fold over [`MAX_FOLDED`].
fn expr(e: &Expr) -> Result<Option<Folded>, String> {
    let folded = match e {
        Expr::Const(c) => Some(constant(&c.value)),
        Expr::Var(_) => None,
        Expr::List(l) => {
            let items = l.items.iter().map(expr).collect::<Result<Vec<_>, _>>()?;
            all_const(&l.items).then(|| Folded::Seq(2 + items.iter().map(|f| f.map_or(64, repr) + 2).sum::<u64>()))
        }
        Expr::Map(m) => {
            let keys = m.keys.iter().map(expr).collect::<Result<Vec<_>, _>>()?;
            let values = m.values.iter().map(expr).collect::<Result<Vec<_>, _>>()?;
            (all_const(&m.keys) && all_const(&m.values)).then(|| {
                let text = keys.iter().chain(&values).map(|f| f.map_or(64, repr) + 2).sum::<u64>();
                Folded::Seq(2 + text)
            })
        }
        Expr::UnaryOp(u) => expr(&u.expr)?.map(|f| match (&u.op, f) {
            (UnaryOpKind::Neg, Folded::Int(i)) => i.checked_neg().map_or(Folded::Small, Folded::Int),
            _ => Folded::Small,
        }),
        Expr::BinOp(b) => {
            let (l, r) = (expr(&b.left)?, expr(&b.right)?);
            match l.zip(r).map(|(l, r)| binop(b.op, l, r)) {
                Some(Folded::Str(n) | Folded::Seq(n)) if n > MAX_FOLDED => {
                    return Err(format!(
                        "chat template error: the constant expression on line {} builds a value of up to {n} \
                         bytes while the template is compiled (a limit of clex: at most {MAX_FOLDED})",
                        b.span().start_line
                    ))
                }
                f => f,
            }
        }
        Expr::Compare(c) => {
            let mut all = expr(&c.expr)?.is_some();
            for op in &c.ops {
                all &= expr(&op.expr)?.is_some();
            }
            all.then_some(Folded::Small)
        }
        Expr::Slice(s) => {
            expr(&s.expr)?;
            exprs(s.start.iter().chain(&s.stop).chain(&s.step))?;
            None
        }
        Expr::IfExpr(i) => {
            exprs([&i.test_expr, &i.true_expr])?;
            exprs(&i.false_expr)?;
            None
        }
        Expr::Filter(f) => {
            exprs(&f.expr)?;
            args(&f.args)?;
            None
        }
        Expr::Test(t) => {
            expr(&t.expr)?;
            args(&t.args)?;
            None
        }
        Expr::GetAttr(g) => {
            expr(&g.expr)?;
            None
        }
        Expr::GetItem(g) => {
            exprs([&g.expr, &g.subscript_expr])?;
            None
        }
        Expr::Call(c) => {
            expr(&c.expr)?;
            args(&c.args)?;
            None
        }
    };
    Ok(folded)
}

fn all_const(e: &[Expr]) -> bool {
    e.iter().all(|e| matches!(e, Expr::Const(_)))
}

fn constant(v: &minijinja::Value) -> Folded {
    match v.kind() {
        ValueKind::String => Folded::Str(v.as_str().map_or(0, str::len) as u64),
        ValueKind::Number => i128::try_from(v.clone()).map_or(Folded::Small, Folded::Int),
        ValueKind::Undefined | ValueKind::None | ValueKind::Bool => Folded::Small,
        // other literals (bytes, sequences, maps) are bounded by the source
        _ => Folded::Str(6 * v.to_string().len() as u64 + 2),
    }
}

/// The most bytes a value's `repr` (inside a list's text) can take: strings are quoted
/// and escaped (at most 6 bytes per byte).
fn repr(f: Folded) -> u64 {
    match f {
        Folded::Str(n) => n.saturating_mul(6).saturating_add(2),
        f => f.text(),
    }
}

/// A repetition count: an integer as is; anything else that might pass as one is taken
/// as large as minijinja allows a repeated string to be.
fn count(f: Folded) -> u64 {
    match f {
        Folded::Int(i) => u64::try_from(i).unwrap_or(0),
        Folded::Small => 100_000_000,
        Folded::Str(_) | Folded::Seq(_) => 0,
    }
}

/// What `l op r` can fold to. Where minijinja would fail (and so not fold), any small
/// bound will do; where it is unclear, the larger bound is taken.
fn binop(op: BinOpKind, l: Folded, r: Folded) -> Folded {
    use Folded::*;
    let int = |v: Option<i128>| v.map_or(Small, Int);
    match (op, l, r) {
        (BinOpKind::Mul, Str(s), n) | (BinOpKind::Mul, n, Str(s)) => Str(s.saturating_mul(count(n))),
        (BinOpKind::Mul, Seq(s), n) | (BinOpKind::Mul, n, Seq(s)) => Seq(s.saturating_mul(count(n))),
        (BinOpKind::Mul, Int(a), Int(b)) => int(a.checked_mul(b)),
        (BinOpKind::Add, Int(a), Int(b)) => int(a.checked_add(b)),
        (BinOpKind::Sub, Int(a), Int(b)) => int(a.checked_sub(b)),
        (BinOpKind::FloorDiv, Int(a), Int(b)) => int(a.checked_div_euclid(b)),
        (BinOpKind::Rem, Int(a), Int(b)) => int(a.checked_rem_euclid(b)),
        (BinOpKind::Pow, Int(a), Int(b)) => int(u32::try_from(b).ok().and_then(|b| a.checked_pow(b))),
        (BinOpKind::Add | BinOpKind::Concat, Seq(a), Seq(b)) => Seq(a.saturating_add(b)),
        (BinOpKind::Add | BinOpKind::Concat, a, b) if matches!(a, Str(_) | Seq(_)) || matches!(b, Str(_) | Seq(_)) => {
            Str(a.text().saturating_add(b.text()))
        }
        (BinOpKind::Concat, a, b) => Str(a.text() + b.text()),
        // `and` / `or` give one of their operands
        (BinOpKind::ScAnd | BinOpKind::ScOr, Int(a), Int(b)) => Int(if a.abs() > b.abs() { a } else { b }),
        (BinOpKind::ScAnd | BinOpKind::ScOr, a, b) if a.text() >= b.text() => a,
        (BinOpKind::ScAnd | BinOpKind::ScOr, _, b) => b,
        _ => Small,
    }
}
