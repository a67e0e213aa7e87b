//! `\set` expressions: pgbench's integer and double arithmetic, `:name`
//! references and the functions a workload uses to draw its keys.
//! Parsed once, when the script is read; evaluated per transaction.

use std::collections::HashMap;

use crate::random::Random;

/// A value of an expression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Double(f64),
}

impl Num {
    fn double(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Double(d) => d,
        }
    }

    fn int(self, what: &str) -> Result<i64, String> {
        match self {
            Num::Int(i) => Ok(i),
            Num::Double(d) if d.is_finite() && d.fract() == 0.0 && d.abs() < 9.2e18 => Ok(d as i64),
            Num::Double(d) => Err(format!("{what} must be an integer, not {d}")),
        }
    }

    /// As SQL and `:name` see it.
    pub(crate) fn text(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::Double(d) => format!("{d:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Num(Num),
    Var(String),
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    Abs,
    Least,
    Greatest,
    Mod,
    Int,
    Double,
    Random,
    RandomExponential,
    RandomGaussian,
}

/// Each function's name and how many arguments it takes (`None`: one or
/// more).
const FUNCTIONS: &[(&str, Function, Option<usize>)] = &[
    ("abs", Function::Abs, Some(1)),
    ("least", Function::Least, None),
    ("greatest", Function::Greatest, None),
    ("mod", Function::Mod, Some(2)),
    ("int", Function::Int, Some(1)),
    ("double", Function::Double, Some(1)),
    ("random", Function::Random, Some(2)),
    ("random_exponential", Function::RandomExponential, Some(3)),
    ("random_gaussian", Function::RandomGaussian, Some(3)),
];

/// Parses `text`; the message says what was expected where.
pub(crate) fn parse(text: &str) -> Result<Expr, String> {
    let mut p = Parser {
        chars: text.char_indices().collect(),
        at: 0,
        text,
    };
    let expr = p.sum()?;
    p.skip_space();
    match p.peek() {
        None => Ok(expr),
        Some(c) => Err(format!("unexpected {c:?} at {:?}", p.rest())),
    }
}

struct Parser<'a> {
    chars: Vec<(usize, char)>,
    at: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).map(|&(_, c)| c)
    }

    fn rest(&self) -> &str {
        self.chars.get(self.at).map_or("", |&(i, _)| &self.text[i..])
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            out.push(c);
            self.at += 1;
        }
        out
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat('+') {
                Op::Add
            } else if self.eat('-') {
                Op::Sub
            } else {
                return Ok(left);
            };
            left = Expr::Binary(op, Box::new(left), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat('*') {
                Op::Mul
            } else if self.eat('/') {
                Op::Div
            } else if self.eat('%') {
                Op::Mod
            } else {
                return Ok(left);
            };
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat('-') {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, String> {
        self.skip_space();
        match self.peek() {
            Some('(') => {
                self.at += 1;
                let inner = self.sum()?;
                if !self.eat(')') {
                    return Err(format!("a ')' missing at {:?}", self.rest()));
                }
                Ok(inner)
            }
            Some(':') => {
                self.at += 1;
                let name = self.word();
                if name.is_empty() {
                    return Err("a variable's name missing after ':'".to_owned());
                }
                Ok(Expr::Var(name))
            }
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() => {
                let name = self.word();
                let Some(&(_, function, arity)) = FUNCTIONS.iter().find(|(n, ..)| n.eq_ignore_ascii_case(&name)) else {
                    let known: Vec<&str> = FUNCTIONS.iter().map(|(n, ..)| *n).collect();
                    return Err(format!(
                        "unknown function {name}; the functions are {}",
                        known.join(", ")
                    ));
                };
                if !self.eat('(') {
                    return Err(format!("{name} needs its arguments in parentheses"));
                }
                let mut args = Vec::new();
                if !self.eat(')') {
                    loop {
                        args.push(self.sum()?);
                        if self.eat(')') {
                            break;
                        }
                        if !self.eat(',') {
                            return Err(format!("a ',' or ')' missing in {name}( at {:?}", self.rest()));
                        }
                    }
                }
                match arity {
                    Some(n) if args.len() != n => Err(format!("{name} takes {n} argument(s), not {}", args.len())),
                    None if args.is_empty() => Err(format!("{name} takes one argument or more")),
                    _ => Ok(Expr::Call(function, args)),
                }
            }
            Some(c) => Err(format!("unexpected {c:?} at {:?}", self.rest())),
            None => Err("an expression ends too soon".to_owned()),
        }
    }

    fn number(&mut self) -> Result<Expr, String> {
        let start = self.at;
        while let Some(c) = self.peek() {
            let exponent_sign =
                (c == '-' || c == '+') && self.at > start && matches!(self.chars[self.at - 1].1, 'e' | 'E');
            if !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || exponent_sign) {
                break;
            }
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().map(|&(_, c)| c).collect();
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Expr::Num(Num::Int(i)));
        }
        text.parse::<f64>()
            .map(|d| Expr::Num(Num::Double(d)))
            .map_err(|_| format!("{text:?} is not a number"))
    }
}

impl Expr {
    /// The variables it reads.
    pub(crate) fn vars(&self, out: &mut Vec<String>) {
        match self {
            Expr::Num(_) => {}
            Expr::Var(name) => out.push(name.clone()),
            Expr::Neg(e) => e.vars(out),
            Expr::Binary(_, a, b) => {
                a.vars(out);
                b.vars(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.vars(out)),
        }
    }

    /// Its value, given the variables set so far.
    pub(crate) fn eval(&self, vars: &HashMap<String, Num>, random: &mut Random) -> Result<Num, String> {
        match self {
            Expr::Num(n) => Ok(*n),
            Expr::Var(name) => vars.get(name).copied().ok_or_else(|| format!(":{name} is not set")),
            Expr::Neg(e) => match e.eval(vars, random)? {
                Num::Int(i) => i.checked_neg().map(Num::Int).ok_or_else(overflow),
                Num::Double(d) => Ok(Num::Double(-d)),
            },
            Expr::Binary(op, a, b) => binary(*op, a.eval(vars, random)?, b.eval(vars, random)?),
            Expr::Call(function, args) => {
                let args = args
                    .iter()
                    .map(|a| a.eval(vars, random))
                    .collect::<Result<Vec<_>, _>>()?;
                call(*function, &args, random)
            }
        }
    }
}

fn overflow() -> String {
    "integer out of range".to_owned()
}

fn binary(op: Op, a: Num, b: Num) -> Result<Num, String> {
    if let (Num::Int(a), Num::Int(b)) = (a, b) {
        let v = match op {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
            Op::Div | Op::Mod if b == 0 => return Err("division by zero".to_owned()),
            Op::Div => a.checked_div(b),
            Op::Mod => a.checked_rem(b),
        };
        return v.map(Num::Int).ok_or_else(overflow);
    }
    let (a, b) = (a.double(), b.double());
    Ok(Num::Double(match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        Op::Div | Op::Mod if b == 0.0 => return Err("division by zero".to_owned()),
        Op::Div => a / b,
        Op::Mod => a % b,
    }))
}

fn call(function: Function, args: &[Num], random: &mut Random) -> Result<Num, String> {
    let range = |name: &str| -> Result<(i64, i64), String> {
        let (lb, ub) = (args[0].int(name)?, args[1].int(name)?);
        if lb > ub {
            return Err(format!("{name}({lb}, {ub}): the lower bound is above the upper"));
        }
        Ok((lb, ub))
    };
    Ok(match function {
        Function::Abs => match args[0] {
            Num::Int(i) => Num::Int(i.checked_abs().ok_or_else(overflow)?),
            Num::Double(d) => Num::Double(d.abs()),
        },
        Function::Least | Function::Greatest => {
            let pick = |a: Num, b: Num| {
                let less = a.double() < b.double();
                if less == (function == Function::Least) { a } else { b }
            };
            args[1..].iter().fold(args[0], |a, &b| pick(a, b))
        }
        Function::Mod => binary(Op::Mod, args[0], args[1])?,
        Function::Int => Num::Int(args[0].double().trunc() as i64),
        Function::Double => Num::Double(args[0].double()),
        Function::Random => {
            let (lb, ub) = range("random")?;
            Num::Int(random.uniform(lb, ub))
        }
        Function::RandomExponential => {
            let (lb, ub) = range("random_exponential")?;
            let p = args[2].double();
            if p.is_nan() || p <= 0.0 {
                return Err(format!("random_exponential's parameter must be above 0, not {p}"));
            }
            Num::Int(random.exponential(lb, ub, p))
        }
        Function::RandomGaussian => {
            let (lb, ub) = range("random_gaussian")?;
            let p = args[2].double();
            if p.is_nan() || p < 2.0 {
                return Err(format!("random_gaussian's parameter must be 2 or more, not {p}"));
            }
            Num::Int(random.gaussian(lb, ub, p))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> Result<Num, String> {
        let vars = HashMap::from([("scale".to_owned(), Num::Int(50))]);
        parse(text)?.eval(&vars, &mut Random::seeded(3))
    }

    #[test]
    fn arithmetic_is_pgbenchs() {
        assert_eq!(eval("1 + 2 * 3"), Ok(Num::Int(7)));
        assert_eq!(eval("(1 + 2) * -3"), Ok(Num::Int(-9)));
        assert_eq!(eval("7 / 2"), Ok(Num::Int(3)));
        assert_eq!(eval("7 % 3 + mod(-7, 3)"), Ok(Num::Int(0)));
        assert_eq!(eval("7.0 / 2"), Ok(Num::Double(3.5)));
        assert_eq!(eval("100000 * :scale"), Ok(Num::Int(5_000_000)));
        assert_eq!(eval("least(3, :scale, 9) + greatest(1, 2)"), Ok(Num::Int(5)));
        assert_eq!(eval("abs(-4) + int(2.9) + 1e3"), Ok(Num::Double(1006.0)));
        assert_eq!(eval("2.5e-1 * 4"), Ok(Num::Double(1.0)));
        let key = eval("random(1, 100000 * :scale)").unwrap().int("").unwrap();
        assert!((1..=5_000_000).contains(&key));
    }

    #[test]
    fn mistakes_say_what_and_where() {
        assert_eq!(eval("1 +"), Err("an expression ends too soon".to_owned()));
        assert_eq!(eval("(1 + 2"), Err("a ')' missing at \"\"".to_owned()));
        assert_eq!(eval("1 2"), Err("unexpected '2' at \"2\"".to_owned()));
        assert!(
            eval("rand(1, 2)")
                .unwrap_err()
                .starts_with("unknown function rand; the functions are abs,")
        );
        assert_eq!(eval("random(1)"), Err("random takes 2 argument(s), not 1".to_owned()));
        assert_eq!(eval("1 / 0"), Err("division by zero".to_owned()));
        assert_eq!(eval(":nope + 1"), Err(":nope is not set".to_owned()));
        assert_eq!(
            eval("random(5, 1)"),
            Err("random(5, 1): the lower bound is above the upper".to_owned())
        );
        assert_eq!(
            eval("random_gaussian(1, 10, 1.5)"),
            Err("random_gaussian's parameter must be 2 or more, not 1.5".to_owned())
        );
        assert_eq!(eval("9223372036854775807 + 1"), Err("integer out of range".to_owned()));
    }
}
