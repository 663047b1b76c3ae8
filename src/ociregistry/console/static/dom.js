// Building DOM nodes safely: every string becomes a text node or an attribute value, never
// markup. There is no innerHTML anywhere in the console, and no inline style (the CSP forbids
// both inline scripts and inline styles).

const FORBIDDEN = new Set(["style", "innerHTML", "outerHTML", "srcdoc"]);

/** `h("a", {href: "#/x", class: "link", onclick: fn}, "text", child, [more])` */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (FORBIDDEN.has(key)) throw new Error(`h(): ${key} is not allowed`);
    if (value === undefined || value === null) continue;
    if (key === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (typeof value === "boolean") {
      el[key] = value; // checked, disabled, selected, hidden, required, readOnly
    } else if (key === "value") {
      el.value = String(value);
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append strings (as text) and nodes, skipping null, undefined and false. */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}
