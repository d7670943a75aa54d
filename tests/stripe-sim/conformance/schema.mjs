// The reference: the response types that Stripe's Node package (npm `stripe`, generated from
// Stripe's OpenAPI spec for the API version it pins) declares in its .d.ts files, read with the
// TypeScript compiler. Nothing here is written by hand about Stripe's objects: which interface
// an `object: "…"` value names, which fields are required, optional or nullable, and which
// enum values exist all come from the installed package.
//
// `field: T | null` is a required field that may be null; `field?: T` is one that Stripe leaves
// out when it has no value (so `null` there is drift); a key the interface does not declare is
// a field this API version does not have.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import ts from 'typescript';

const require = createRequire(import.meta.url);

export function stripePackageDir() {
  // The package exports no `./package.json`; walk up from its main module.
  let dir = path.dirname(require.resolve('stripe'));
  const isRoot = (d) => {
    try {
      return JSON.parse(fs.readFileSync(path.join(d, 'package.json'), 'utf8')).name === 'stripe';
    } catch {
      return false;
    }
  };
  while (!isRoot(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

function dtsFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...dtsFiles(p));
    else if (entry.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const F = ts.TypeFlags;

export class Reference {
  constructor() {
    const root = path.join(stripePackageDir(), 'cjs');
    const resourceFiles = dtsFiles(path.join(root, 'resources'));
    const libFile = path.join(root, 'lib.d.ts');
    this.program = ts.createProgram([...resourceFiles, libFile], {
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      types: [],
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
    });
    this.checker = this.program.getTypeChecker();
    // object literal -> [{ name, type }]
    this.byObject = new Map();
    const resourceSet = new Set(resourceFiles.map((f) => path.resolve(f)));
    for (const sf of this.program.getSourceFiles()) {
      const file = path.resolve(sf.fileName);
      const isLib = file === path.resolve(libFile);
      if (!resourceSet.has(file) && !isLib) continue;
      for (const st of sf.statements) {
        if (!ts.isInterfaceDeclaration(st)) continue;
        if (isLib && st.name.text !== 'ApiList' && st.name.text !== 'ApiSearchResult') continue;
        const sym = this.checker.getSymbolAtLocation(st.name);
        if (!sym) continue;
        const type = this.checker.getDeclaredTypeOfSymbol(sym);
        const objProp = this.checker.getPropertyOfType(type, 'object');
        if (!objProp) continue;
        const ot = this.checker.getTypeOfSymbol(objProp);
        if (!(ot.flags & F.StringLiteral)) continue;
        const list = this.byObject.get(ot.value) ?? [];
        if (!list.some((c) => c.type === type)) list.push({ name: st.name.text, type });
        this.byObject.set(ot.value, list);
      }
    }
    this.discCache = new Map();
    this.propCache = new Map();
  }

  /// The object types the package declares (`"customer"` → `Customer`, `DeletedCustomer`).
  objectTypes() {
    return [...this.byObject.keys()].sort();
  }

  /// Fields of an object type that Stripe omits rather than sends as null.
  optionalFields(object) {
    const [first] = this.byObject.get(object) ?? [];
    if (!first) return [];
    return this.props(first.type)
      .filter((d) => d.optional && !d.nullable && !d.members.every((m) => m.flags & F.Void))
      .map((d) => d.name);
  }

  typeName(t) {
    return this.checker.typeToString(t);
  }

  props(t) {
    let p = this.propCache.get(t);
    if (!p) {
      p = this.checker.getPropertiesOfType(t).map((sym) => {
        const optional = (sym.flags & ts.SymbolFlags.Optional) !== 0;
        const raw = this.checker.getTypeOfSymbol(sym);
        const members = (raw.isUnion() ? raw.types : [raw]).filter((m) => !(m.flags & F.Undefined));
        const nullable = members.some((m) => m.flags & F.Null);
        return { name: sym.name, optional, type: raw, members, nullable };
      });
      this.propCache.set(t, p);
    }
    return p;
  }

  /// Properties typed as a single string literal (`object: 'card'`, `type: 'invoice.paid'`):
  /// a value whose field differs cannot be of this type.
  discriminants(t) {
    let d = this.discCache.get(t);
    if (!d) {
      d = [];
      if (t.flags & F.Object && !this.checker.isArrayType(t)) {
        for (const p of this.props(t)) {
          if (!p.optional && p.members.length === 1 && p.members[0].flags & F.StringLiteral) {
            d.push([p.name, p.members[0].value]);
          }
        }
      }
      this.discCache.set(t, d);
    }
    return d;
  }

  /// `OtherString` (`string & Record<never, never>`): the open end of an enum.
  isOtherString(t) {
    if (t.aliasSymbol?.name === 'OtherString') return true;
    return !!(t.flags & F.Intersection) && t.types.some((m) => m.flags & F.String) && t.types.every((m) => m.flags & F.String || (m.flags & F.Object && this.checker.getPropertiesOfType(m).length === 0));
  }

  isDecimal(t) {
    return t.aliasSymbol?.name === 'Decimal';
  }

  /// Could `v` be of (non-union) type `t` at first sight? Used to choose union members.
  plausible(v, t) {
    if (t.flags & (F.Any | F.Unknown)) return true;
    if (v === null) return !!(t.flags & F.Null);
    if (this.isDecimal(t)) return typeof v === 'string';
    switch (typeof v) {
      case 'string':
        if (t.flags & F.StringLiteral) return t.value === v;
        if (t.flags & F.String) return true;
        if (t.flags & F.Intersection) return t.types.some((m) => m.flags & F.String);
        return false;
      case 'number':
        return !!(t.flags & (F.Number | F.NumberLiteral));
      case 'boolean':
        return !!(t.flags & (F.Boolean | F.BooleanLiteral));
      case 'object':
        if (Array.isArray(v)) return this.checker.isArrayType(t);
        if (t.flags & F.TypeParameter) return typeof v.object === 'string';
        if (!(t.flags & F.Object) || this.checker.isArrayType(t)) return false;
        return this.discriminants(t).every(([k, lit]) => v[k] === lit);
      default:
        return false;
    }
  }

  /// Checks `v` against `t`; returns { issues: [{ path, msg }], objects: [{ path, object }] }.
  check(v, t, p = '') {
    const out = { issues: [], objects: [] };
    const members = (t.isUnion() ? t.types : [t]).filter((m) => !(m.flags & F.Undefined));
    // Stripe's enums are `'a' | 'b' | OtherString` so that clients tolerate values added
    // later; a server speaking this version may only send the listed ones.
    if (typeof v === 'string' && members.some((m) => this.isOtherString(m)) && !members.some((m) => m.flags & F.String)) {
      const listed = members.filter((m) => m.flags & F.StringLiteral).map((m) => m.value);
      if (listed.length && !listed.includes(v)) {
        out.issues.push({ path: p, msg: `enum value ${short(v)} is not one of ${listed.join('|')}` });
      }
      return out;
    }
    const candidates = members.filter((m) => this.plausible(v, m));
    if (candidates.length === 0) {
      out.issues.push({ path: p, msg: `value ${short(v)} is not ${this.typeName(t)}` });
      return out;
    }
    if (candidates.length === 1) return this.checkOne(v, candidates[0], p);
    let best = null;
    for (const c of candidates) {
      const r = this.checkOne(v, c, p);
      if (!best || r.issues.length < best.issues.length) best = r;
      if (r.issues.length === 0) break;
    }
    return best;
  }

  /// Checks a value against whatever type its own `object` field names.
  checkByObject(v, p = '') {
    const cands = this.byObject.get(v?.object);
    if (!cands) {
      return { issues: [{ path: p, msg: `unknown object type ${short(v?.object)}` }], objects: [{ path: p, object: String(v?.object) }] };
    }
    const fitting = cands.filter((c) => this.plausible(v, c.type));
    const pool = fitting.length ? fitting : cands;
    let best = null;
    for (const c of pool) {
      const r = this.checkOne(v, c.type, p);
      if (!best || r.issues.length < best.issues.length) best = r;
      if (r.issues.length === 0) break;
    }
    return best;
  }

  checkOne(v, t, p) {
    const out = { issues: [], objects: [] };
    const bad = (msg) => out.issues.push({ path: p, msg });
    if (t.flags & (F.Any | F.Unknown)) return out;
    if (t.flags & F.TypeParameter) return this.checkByObject(v, p);
    if (v === null) {
      if (!(t.flags & F.Null)) bad(`null is not ${this.typeName(t)}`);
      return out;
    }
    if (this.isDecimal(t)) {
      if (typeof v !== 'string' || !/^-?\d+(\.\d+)?$/.test(v)) bad(`${short(v)} is not a decimal string`);
      return out;
    }
    if (t.flags & (F.StringLiteral | F.String | F.Number | F.NumberLiteral | F.Boolean | F.BooleanLiteral | F.Intersection)) {
      if (!this.plausible(v, t)) bad(`${short(v)} is not ${this.typeName(t)}`);
      return out;
    }
    if (!(t.flags & F.Object)) {
      bad(`${short(v)} cannot be checked against ${this.typeName(t)}`);
      return out;
    }
    if (this.checker.isArrayType(t)) {
      if (!Array.isArray(v)) {
        bad(`${short(v)} is not an array`);
        return out;
      }
      const [el] = this.checker.getTypeArguments(t);
      v.forEach((item, i) => merge(out, this.check(item, el, `${p}[${i}]`)));
      return out;
    }
    if (typeof v !== 'object' || Array.isArray(v)) {
      bad(`${short(v)} is not an object (${this.typeName(t)})`);
      return out;
    }
    if (typeof v.object === 'string' && this.checker.getPropertyOfType(t, 'object')) {
      out.objects.push({ path: p, object: v.object });
    }
    const declared = new Map(this.props(t).map((d) => [d.name, d]));
    for (const d of declared.values()) {
      const here = p ? `${p}.${d.name}` : d.name;
      if (!Object.prototype.hasOwnProperty.call(v, d.name)) {
        if (!d.optional) out.issues.push({ path: here, msg: 'required field missing' });
        continue;
      }
      const val = v[d.name];
      if (val === null && d.optional && !d.nullable) {
        out.issues.push({ path: here, msg: 'optional field sent as null (Stripe leaves it out)' });
        continue;
      }
      if (d.members.length === 1 && d.members[0].flags & F.Void) {
        out.issues.push({ path: here, msg: 'field is never sent on this type' });
        continue;
      }
      merge(out, this.check(val, d.type, here));
    }
    const index = this.checker.getIndexInfosOfType(t).find((i) => i.keyType.flags & F.String);
    for (const k of Object.keys(v)) {
      if (declared.has(k)) continue;
      const here = p ? `${p}.${k}` : k;
      if (index) merge(out, this.check(v[k], index.type, here));
      else out.issues.push({ path: here, msg: `field not in ${this.typeName(t)} for this API version` });
    }
    return out;
  }
}

function merge(into, r) {
  into.issues.push(...r.issues);
  into.objects.push(...r.objects);
}

function short(v) {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/// Attributes each issue to the innermost object (value with an `object` field) holding it.
export function attribute(result) {
  const objs = result.objects.map((o) => ({ ...o, issues: [] }));
  objs.sort((a, b) => b.path.length - a.path.length);
  const within = (path, prefix) => prefix === '' || path === prefix || path.startsWith(`${prefix}.`) || path.startsWith(`${prefix}[`);
  const orphans = [];
  for (const issue of result.issues) {
    const owner = objs.find((o) => within(issue.path, o.path));
    if (owner) owner.issues.push(issue);
    else orphans.push(issue);
  }
  return { objects: objs, orphans };
}

/// `items.data[3].price` -> `items.data[].price`, to group the same drift across objects.
export function pattern(p) {
  return p.replace(/\[\d+\]/g, '[]');
}
