//! Puts a meter on what a template's expressions cost at render time.
//!
//! Fuel counts VM instructions, but one instruction can cost a lot: `seq * 4188651 ~ x`
//! formats a list of millions of items, `s|length` counts the characters of a 100 MB
//! string, and a loop can do either 100,000 times within the fuel. minijinja has no hook
//! on its operators, so the template is rewritten before it is compiled (from minijinja's
//! own parse tree, through `unstable_machinery`), routing what can be expensive through
//! two functions of `super::limits`:
//!
//! * `a + b`, `a * b`, `a ~ b` become `__clex_op("+", a, b)` (chains of one operator
//!   become one call), which checks the size of the result before building it and charges
//!   it to the render's work budget;
//! * operands of comparisons and `in`, the input and arguments of filters and tests, the
//!   receiver and arguments of methods, and the object of `[…]` are wrapped in
//!   `__clex_read(x)`, which charges the size of `x` (a string's bytes, a list's or map's
//!   items) and returns it unchanged (`__clex_str(x)` where only a string costs its size:
//!   `x[i]`, tests, `length`, `first`, `last`); the results of filters, calls and slices
//!   get `|__clex_read` appended;
//! * what `{{ … }}` emits is read (it may be captured by `{% set %}` blocks and macros,
//!   where the output limit does not reach), and a `for` loop's iterable goes through
//!   `__clex_loop(items, k)`, which charges each item plus the `k` bytes of text the
//!   loop's body emits per pass.
//!
//! Everything else is kept byte for byte, including the newlines of what is dropped, so
//! errors keep their line numbers. Positions come from the tree's spans, which minijinja
//! does not always start at the expression's first token (postfix and filter nodes start
//! late, comparisons and `if` expressions early); [`Meter::range`] derives them from the
//! children and from the brackets around them.

use minijinja::machinery::ast::{BinOpKind, CallArg, Expr, Stmt, UnaryOpKind};
use minijinja::machinery::{parse, tokenize, Token, WhitespaceConfig};
use minijinja::syntax::SyntaxConfig;

/// The function that performs `+`, `*` and `~` with the limits.
pub const OP_FN: &str = "__clex_op";
/// The function (and filter) that charges the size of a value and returns it.
pub const READ_FN: &str = "__clex_read";
/// The same, charging strings only: for where a list or map costs nothing to look into
/// (`x[i]`, `length`, `first`, `last`, tests).
pub const STR_FN: &str = "__clex_str";
/// The function a `for` loop's iterable goes through: `__clex_loop(items, k)` charges
/// each item plus the `k` bytes of text the loop's body emits per iteration.
pub const LOOP_FN: &str = "__clex_loop";

/// A replacement of the source range `start..end`.
struct Edit {
    start: usize,
    end: usize,
    kind: Kind,
}

enum Kind {
    /// `__clex_read(<range, with these edits inside>)` (or [`STR_FN`]).
    Read(&'static str, Vec<Edit>),
    /// `__clex_loop(<range, with these edits inside>, <bytes>)`.
    Loop(usize, Vec<Edit>),
    /// `<range, with these edits inside>|__clex_read`: for results of filters, calls and
    /// slices, so that a chain `x|a|b` stays a chain instead of nesting calls (the parser
    /// allows about 70 levels of nesting, and real templates chain filters).
    Append(Vec<Edit>),
    /// `__clex_op("<op>", <operand>, <operand>, …)`: the text between operands (the
    /// operators, brackets) is dropped.
    Op(&'static str, Vec<Part>),
}

/// One operand of an [`Kind::Op`]: its range and the edits inside it.
struct Part {
    start: usize,
    end: usize,
    edits: Vec<Edit>,
}

/// Rewrites `source` as described in the module documentation. A template that does not
/// parse is returned as is (minijinja then reports the syntax error on the original).
pub fn instrument(source: &str) -> Result<String, String> {
    let ws = WhitespaceConfig { keep_trailing_newline: false, lstrip_blocks: true, trim_blocks: true };
    let Ok(ast) = parse(source, "chat_template", SyntaxConfig::default(), ws) else {
        return Ok(source.to_owned());
    };
    let mut brackets = Vec::new();
    for tok in tokenize(source, false, SyntaxConfig::default(), ws) {
        let Ok((tok, span)) = tok else { return Ok(source.to_owned()) };
        let depth = match tok {
            Token::ParenOpen | Token::BracketOpen | Token::BraceOpen => 1,
            Token::ParenClose | Token::BracketClose | Token::BraceClose => -1,
            _ => continue,
        };
        brackets.push((span.start_offset as usize, depth));
    }
    let meter = Meter { src: source, brackets };
    let mut edits = Vec::new();
    meter.stmt(&ast, &mut edits);
    let edits = sorted(edits);
    let mut out = String::with_capacity(source.len() + source.len() / 2);
    meter.emit(&mut out, 0, source.len(), &edits)?;
    Ok(out)
}

struct Meter<'s> {
    src: &'s str,
    /// Offsets of every bracket token, with +1 for an opening and -1 for a closing one.
    brackets: Vec<(usize, i32)>,
}

impl Meter<'_> {
    fn stmts(&self, s: &[Stmt], out: &mut Vec<Edit>) {
        s.iter().for_each(|s| self.stmt(s, out));
    }

    fn stmt(&self, s: &Stmt, out: &mut Vec<Edit>) {
        match s {
            Stmt::Template(t) => self.stmts(&t.children, out),
            // what is emitted is charged: it may be captured (`{% set x %}`, macros),
            // where the output limit does not reach
            Stmt::EmitExpr(e) => self.emitted(&e.expr, out),
            Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => {}
            Stmt::ForLoop(f) => {
                let (start, end) = self.range(&f.iter);
                let mut inner = Vec::new();
                self.expr(&f.iter, &mut inner);
                out.push(Edit { start, end, kind: Kind::Loop(raw_bytes(&f.body), sorted(inner)) });
                f.filter_expr.iter().for_each(|e| self.expr(e, out));
                self.stmts(&f.body, out);
                self.stmts(&f.else_body, out);
            }
            Stmt::IfCond(c) => {
                self.expr(&c.expr, out);
                self.stmts(&c.true_body, out);
                self.stmts(&c.false_body, out);
            }
            Stmt::WithBlock(w) => {
                w.assignments.iter().for_each(|(_, v)| self.expr(v, out));
                self.stmts(&w.body, out);
            }
            Stmt::Set(s) => self.expr(&s.expr, out),
            Stmt::SetBlock(s) => {
                s.filter.iter().for_each(|f| self.filter_block(f, out));
                self.stmts(&s.body, out);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled, out);
                self.stmts(&a.body, out);
            }
            Stmt::FilterBlock(f) => {
                self.filter_block(&f.filter, out);
                self.stmts(&f.body, out);
            }
            Stmt::Block(b) => self.stmts(&b.body, out),
            Stmt::Import(i) => self.expr(&i.expr, out),
            Stmt::FromImport(i) => self.expr(&i.expr, out),
            Stmt::Extends(e) => self.expr(&e.name, out),
            Stmt::Include(i) => self.expr(&i.name, out),
            Stmt::Macro(m) => {
                m.defaults.iter().for_each(|e| self.expr(e, out));
                self.stmts(&m.body, out);
            }
            Stmt::CallBlock(c) => {
                self.expr(&c.call.expr, out);
                self.args(&c.call.args, false, out);
                c.macro_decl.defaults.iter().for_each(|e| self.expr(e, out));
                self.stmts(&c.macro_decl.body, out);
            }
            Stmt::Do(d) => {
                self.expr(&d.call.expr, out);
                self.args(&d.call.args, false, out);
            }
        }
    }

    /// The filter chain of `{% filter … %}` / `{% set x | … %}`: not an expression whose
    /// value is used, so only its arguments are metered.
    fn filter_block(&self, e: &Expr, out: &mut Vec<Edit>) {
        match e {
            Expr::Filter(f) => {
                f.expr.iter().for_each(|e| self.filter_block(e, out));
                self.args(&f.args, true, out);
            }
            e => self.expr(e, out),
        }
    }

    fn args(&self, args: &[CallArg], read: bool, out: &mut Vec<Edit>) {
        for a in args {
            match a {
                CallArg::Pos(e) | CallArg::Kwarg(_, e) if read => self.read(e, out),
                CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => {
                    self.expr(e, out)
                }
            }
        }
    }

    /// `e` wrapped in [`READ_FN`] (unless it already is, as a filter's or call's result);
    /// nothing for a constant other than a long string.
    fn read(&self, e: &Expr, out: &mut Vec<Edit>) {
        self.read_with(READ_FN, e, out)
    }

    /// An emitted expression: read, unless what it is made by was charged already (an
    /// operator's, a filter's or a call's result).
    fn emitted(&self, e: &Expr, out: &mut Vec<Edit>) {
        let (start, end) = self.range(e);
        let mut inner = Vec::new();
        self.expr(e, &mut inner);
        match inner.as_slice() {
            [only] if (only.start, only.end) == (start, end) => out.extend(inner),
            _ if is_cheap_const(e) => {}
            _ => out.push(Edit { start, end, kind: Kind::Read(READ_FN, sorted(inner)) }),
        }
    }

    /// [`Meter::read`] with [`STR_FN`].
    fn read_str(&self, e: &Expr, out: &mut Vec<Edit>) {
        self.read_with(STR_FN, e, out)
    }

    fn read_with(&self, func: &'static str, e: &Expr, out: &mut Vec<Edit>) {
        let mut inner = Vec::new();
        self.expr(e, &mut inner);
        self.read_collected(func, e, inner, out);
    }

    /// [`Meter::read_with`] for `e` whose own edits (`inner`) are already collected.
    fn read_collected(&self, func: &'static str, e: &Expr, inner: Vec<Edit>, out: &mut Vec<Edit>) {
        if !is_cheap_const(e) {
            out.push(self.read_edit(func, e, inner));
        }
    }

    fn read_edit(&self, func: &'static str, e: &Expr, mut inner: Vec<Edit>) -> Edit {
        let (start, end) = self.range(e);
        if let [only] = inner.as_slice() {
            if (only.start, only.end) == (start, end) {
                match inner.pop().expect("one edit") {
                    e @ Edit { kind: Kind::Read(..), .. } => return e,
                    // a result is read as it is made: `__clex_read(f())`, not `__clex_read(f()|__clex_read)`
                    Edit { kind: Kind::Append(inner), .. } => return Edit { start, end, kind: Kind::Read(READ_FN, inner) },
                    e => inner.push(e),
                }
            }
        }
        Edit { start, end, kind: Kind::Read(func, sorted(inner)) }
    }

    /// Pushes the outermost edits inside `e`, and `e`'s own.
    fn expr(&self, e: &Expr, out: &mut Vec<Edit>) {
        match e {
            Expr::Var(_) | Expr::Const(_) => {}
            Expr::BinOp(b) => match op_name(b.op) {
                Some(name) => {
                    // `a ~ b ~ c` is `(a ~ b) ~ c`: one call with all three.
                    let mut operands = vec![&b.right];
                    let mut left = &b.left;
                    while let Expr::BinOp(l) = left {
                        if op_name(l.op) != Some(name) {
                            break;
                        }
                        operands.push(&l.right);
                        left = &l.left;
                    }
                    operands.push(left);
                    operands.reverse();
                    let parts = operands
                        .into_iter()
                        .map(|o| {
                            let (start, end) = self.range(o);
                            let mut edits = Vec::new();
                            self.expr(o, &mut edits);
                            Part { start, end, edits: sorted(edits) }
                        })
                        .collect();
                    let (start, end) = self.range(e);
                    out.push(Edit { start, end, kind: Kind::Op(name, parts) });
                }
                None if is_comparison(b.op) => {
                    self.read(&b.left, out);
                    self.read(&b.right, out);
                }
                None => {
                    self.expr(&b.left, out);
                    self.expr(&b.right, out);
                }
            },
            Expr::Compare(c) => {
                self.read(&c.expr, out);
                c.ops.iter().for_each(|o| self.read(&o.expr, out));
            }
            Expr::UnaryOp(u) => self.expr(&u.expr, out),
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr, out);
                self.expr(&i.true_expr, out);
                i.false_expr.iter().for_each(|e| self.expr(e, out));
            }
            Expr::Filter(f) => {
                let mut inner = Vec::new();
                if let Some(input) = &f.expr {
                    let mut sub = Vec::new();
                    self.expr(input, &mut sub);
                    if let [Edit { kind: Kind::Append(_), .. }] = sub.as_slice() {
                        inner.extend(sub); // `x|a|__clex_read|b`: already read as made
                    } else {
                        let func = if matches!(f.name, "length" | "count" | "first" | "last") { STR_FN } else { READ_FN };
                        self.read_collected(func, input, sub, &mut inner);
                    }
                }
                self.args(&f.args, true, &mut inner);
                self.wrap(e, inner, out);
            }
            Expr::Test(t) => {
                self.read_str(&t.expr, out);
                self.args(&t.args, true, out);
            }
            Expr::GetAttr(g) => self.object(&g.expr, out),
            Expr::GetItem(g) => {
                self.read_str(&g.expr, out);
                self.expr(&g.subscript_expr, out);
            }
            Expr::Slice(s) => {
                let mut inner = Vec::new();
                self.read(&s.expr, &mut inner);
                for e in s.start.iter().chain(&s.stop).chain(&s.step) {
                    self.expr(e, &mut inner);
                }
                self.wrap(e, inner, out);
            }
            Expr::Call(c) => {
                let mut inner = Vec::new();
                match &c.expr {
                    // a method: its receiver and arguments are read
                    Expr::GetAttr(g) => {
                        self.read(&g.expr, &mut inner);
                        self.args(&c.args, true, &mut inner);
                    }
                    callee => {
                        self.object(callee, &mut inner);
                        self.args(&c.args, false, &mut inner);
                    }
                }
                self.wrap(e, inner, out);
            }
            Expr::List(l) => l.items.iter().for_each(|e| self.expr(e, out)),
            Expr::Map(m) => m.keys.iter().chain(&m.values).for_each(|e| self.expr(e, out)),
        }
    }

    /// The object of `.name` or of a call: a result there is read with the prefix form
    /// (`f()|__clex_read.x` would not parse).
    fn object(&self, e: &Expr, out: &mut Vec<Edit>) {
        let mut inner = Vec::new();
        self.expr(e, &mut inner);
        if let [Edit { kind: Kind::Append(_), .. }] = inner.as_slice() {
            out.push(self.read_edit(READ_FN, e, inner));
        } else {
            out.extend(inner);
        }
    }

    /// Pushes `e` followed by `|__clex_read`, with `inner` inside.
    fn wrap(&self, e: &Expr, inner: Vec<Edit>, out: &mut Vec<Edit>) {
        let (start, end) = self.range(e);
        out.push(Edit { start, end, kind: Kind::Append(sorted(inner)) });
    }

    /// The byte range of `e`'s source text. A node's own span is trusted for its end (the
    /// last token it consumed) and, for the kinds that start with their own first token,
    /// for its start; otherwise the start is its children's. The range then grows to take
    /// in brackets it leaves open or closes (`(a ~ b).upper()` starts at the `(`).
    fn range(&self, e: &Expr) -> (usize, usize) {
        let own = e.span();
        let (mut start, mut end) = (usize::MAX, own.end_offset as usize);
        if self.starts_with_own_token(e) {
            start = own.start_offset as usize;
        }
        for c in children(e) {
            let (s, t) = self.range(c);
            start = start.min(s);
            end = end.max(t);
        }
        if start == usize::MAX {
            start = own.start_offset as usize;
        }
        self.balance(start, end)
    }

    fn starts_with_own_token(&self, e: &Expr) -> bool {
        match e {
            Expr::Var(_) | Expr::Const(_) | Expr::List(_) | Expr::Map(_) => true,
            Expr::BinOp(b) => !is_comparison(b.op),
            // `x not in y` is `not (x in y)` spanned from the token before `x`
            Expr::UnaryOp(u) => match (&u.op, &u.expr) {
                (UnaryOpKind::Not, Expr::BinOp(b)) if matches!(b.op, BinOpKind::In) => {
                    let (_, l) = self.range(&b.left);
                    let (r, _) = self.range(&b.right);
                    !self.src.get(l..r).is_some_and(|gap| gap.trim_start().starts_with("not"))
                }
                _ => true,
            },
            _ => false,
        }
    }

    /// Widens `start..end` to the brackets it leaves unmatched.
    fn balance(&self, mut start: usize, mut end: usize) -> (usize, usize) {
        let (mut depth, mut lowest) = (0i32, 0i32);
        for &(_, d) in self.brackets.iter().filter(|(o, _)| (start..end).contains(o)) {
            depth += d;
            lowest = lowest.min(depth);
        }
        let (mut closers, mut openers) = (-lowest, depth - lowest);
        if closers > 0 {
            let mut d = 0;
            for &(o, b) in self.brackets.iter().rev().filter(|(o, _)| *o < start) {
                d -= b;
                if d < 0 {
                    closers -= 1;
                    d = 0;
                    if closers == 0 {
                        start = o;
                        break;
                    }
                }
            }
        }
        if openers > 0 {
            let mut d = 0;
            for &(o, b) in self.brackets.iter().filter(|(o, _)| *o >= end) {
                d += b;
                if d < 0 {
                    openers -= 1;
                    d = 0;
                    if openers == 0 {
                        end = o + 1;
                        break;
                    }
                }
            }
        }
        (start, end)
    }

    /// Writes `src[start..end]` with `edits` (sorted, inside the range) applied.
    fn emit(&self, out: &mut String, start: usize, end: usize, edits: &[Edit]) -> Result<(), String> {
        let mut cursor = start;
        for e in edits {
            if e.start < cursor || e.end > end || e.start > e.end {
                return Err(format!(
                    "chat template error: clex could not meter this template (overlapping expressions at bytes {}..{}); \
                     please report it",
                    e.start, e.end
                ));
            }
            out.push_str(&self.src[cursor..e.start]);
            match &e.kind {
                Kind::Read(func, inner) => {
                    out.push_str(func);
                    out.push('(');
                    self.emit(out, e.start, e.end, inner)?;
                    out.push(')');
                }
                Kind::Loop(bytes, inner) => {
                    out.push_str(LOOP_FN);
                    out.push('(');
                    self.emit(out, e.start, e.end, inner)?;
                    out.push_str(&format!(", {bytes})"));
                }
                Kind::Append(inner) => {
                    self.emit(out, e.start, e.end, inner)?;
                    out.push('|');
                    out.push_str(READ_FN);
                }
                Kind::Op(name, parts) => {
                    out.push_str(OP_FN);
                    out.push_str("(\"");
                    out.push_str(name);
                    out.push('"');
                    let mut at = e.start;
                    for p in parts {
                        if p.start < at || p.end > e.end {
                            return Err(format!(
                                "chat template error: clex could not meter this template (operands out of order at \
                                 bytes {}..{}); please report it",
                                p.start, p.end
                            ));
                        }
                        self.newlines(out, at, p.start);
                        out.push_str(", ");
                        self.emit(out, p.start, p.end, &p.edits)?;
                        at = p.end;
                    }
                    self.newlines(out, at, e.end);
                    out.push(')');
                }
            }
            cursor = e.end;
        }
        out.push_str(&self.src[cursor..end]);
        Ok(())
    }

    /// The newlines of dropped text, so that later lines keep their numbers.
    fn newlines(&self, out: &mut String, start: usize, end: usize) {
        let n = self.src[start..end].bytes().filter(|&b| b == b'\n').count();
        out.extend(std::iter::repeat_n('\n', n));
    }
}

/// The most text one pass through `body` emits directly: its raw text, with every branch
/// taken (nested loops charge their own; macros and call blocks are charged as results).
fn raw_bytes(body: &[Stmt]) -> usize {
    body.iter()
        .map(|s| match s {
            Stmt::EmitRaw(r) => r.raw.len(),
            Stmt::IfCond(c) => raw_bytes(&c.true_body) + raw_bytes(&c.false_body),
            Stmt::WithBlock(w) => raw_bytes(&w.body),
            Stmt::SetBlock(b) => raw_bytes(&b.body),
            Stmt::AutoEscape(a) => raw_bytes(&a.body),
            Stmt::FilterBlock(f) => raw_bytes(&f.body),
            Stmt::Block(b) => raw_bytes(&b.body),
            _ => 0,
        })
        .sum()
}

/// A constant not worth a call: anything but a string over 64 bytes.
fn is_cheap_const(e: &Expr) -> bool {
    matches!(e, Expr::Const(c) if c.value.as_str().is_none_or(|s| s.len() <= 64))
}

/// `edits` in source order.
fn sorted(mut edits: Vec<Edit>) -> Vec<Edit> {
    edits.sort_by_key(|e| e.start);
    edits
}

fn op_name(op: BinOpKind) -> Option<&'static str> {
    match op {
        BinOpKind::Add => Some("+"),
        BinOpKind::Mul => Some("*"),
        BinOpKind::Concat => Some("~"),
        _ => None,
    }
}

fn is_comparison(op: BinOpKind) -> bool {
    matches!(
        op,
        BinOpKind::Eq | BinOpKind::Ne | BinOpKind::Lt | BinOpKind::Lte | BinOpKind::Gt | BinOpKind::Gte | BinOpKind::In
    )
}

/// The sub-expressions of `e`.
fn children<'a>(e: &'a Expr<'a>) -> Vec<&'a Expr<'a>> {
    let args = |a: &'a [CallArg<'a>]| {
        a.iter().map(|a| match a {
            CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => e,
        })
    };
    match e {
        Expr::Var(_) | Expr::Const(_) => vec![],
        Expr::BinOp(b) => vec![&b.left, &b.right],
        Expr::UnaryOp(u) => vec![&u.expr],
        Expr::Compare(c) => std::iter::once(&c.expr).chain(c.ops.iter().map(|o| &o.expr)).collect(),
        Expr::IfExpr(i) => [&i.test_expr, &i.true_expr].into_iter().chain(&i.false_expr).collect(),
        Expr::Filter(f) => f.expr.iter().chain(args(&f.args)).collect(),
        Expr::Test(t) => std::iter::once(&t.expr).chain(args(&t.args)).collect(),
        Expr::GetAttr(g) => vec![&g.expr],
        Expr::GetItem(g) => vec![&g.expr, &g.subscript_expr],
        Expr::Slice(s) => std::iter::once(&s.expr).chain(&s.start).chain(&s.stop).chain(&s.step).collect(),
        Expr::Call(c) => std::iter::once(&c.expr).chain(args(&c.args)).collect(),
        Expr::List(l) => l.items.iter().collect(),
        Expr::Map(m) => m.keys.iter().chain(&m.values).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::instrument;

    #[test]
    fn operators_and_reads_are_routed_through_the_meter() {
        let cases = [
            ("{{ a ~ b ~ c }}", r#"{{ __clex_op("~", a, b, c) }}"#),
            ("{{ (a ~ b).upper() }}", r#"{{ (__clex_read(__clex_op("~", a, b))).upper()|__clex_read }}"#),
            ("{{ x|a|b(y) }}", "{{ __clex_read(x)|a|__clex_read|b(__clex_read(y))|__clex_read }}"),
            ("{{ 'x'|upper|upper }}", "{{ 'x'|upper|__clex_read|upper|__clex_read }}"),
            ("{{ m.items()|list }}", "{{ __clex_read(m).items()|__clex_read|list|__clex_read }}"),
            ("{% if m['role'] == 'user' %}{% endif %}", "{% if __clex_read(__clex_str(m)['role']) == 'user' %}{% endif %}"),
            ("{{ x|length }}", "{{ __clex_str(x)|length|__clex_read }}"),
            ("{% if x is string %}{% endif %}", "{% if __clex_str(x) is string %}{% endif %}"),
            ("{% if 'x' not in s %}{% endif %}", "{% if 'x' not in __clex_read(s) %}{% endif %}"),
            ("{{ (1 + 2) * 3 }}", r#"{{ __clex_op("*", __clex_op("+", 1, 2), 3) }}"#),
            ("{{ a\n ~\n b }}", "{{ __clex_op(\"~\", a\n\n, b) }}"),
            ("{{ s[1:] }}", "{{ __clex_read(s)[1:]|__clex_read }}"),
            ("{{ -f()|abs }}", "{{ -f()|__clex_read|abs|__clex_read }}"),
            ("{{ s.upper()[0] ~ f().x ~ g()() ~ (x|h).y }}", r#"{{ __clex_op("~", __clex_read(__clex_read(s).upper())[0], __clex_read(f()).x, __clex_read(g())()|__clex_read, (__clex_read(__clex_read(x)|h)).y) }}"#),
            ("{{ x if a.b.c else y }}", "{{ __clex_read(x if a.b.c else y) }}"),
            ("{{ x }}{{ 'a' }}{{ m['x'] }}", "{{ __clex_read(x) }}{{ 'a' }}{{ __clex_read(__clex_str(m)['x']) }}"),
            (
                "{% for m in messages|reverse if m %}ab{% if m %}cd{% else %}e{% endif %}{% for x in m %}fgh{% endfor %}{% endfor %}",
                "{% for m in __clex_loop(__clex_read(messages)|reverse|__clex_read, 5) if m %}ab{% if m %}cd{% else %}e{% endif %}\
                 {% for x in __clex_loop(m, 3) %}fgh{% endfor %}{% endfor %}",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(instrument(src).unwrap(), want, "{src}");
        }
    }
}
