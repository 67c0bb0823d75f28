// Small DOM helpers: elements are built with textContent only (never innerHTML), so no API text becomes markup.

/** An element with attributes (`class`, `for`, `data-*`, booleans) and children (nodes or strings). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export const byId = (id) => document.getElementById(id);

export function show(element, visible = true) {
  element.hidden = !visible;
}

/** Show a message in an error paragraph (role=alert), or hide it when `message` is empty. */
export function setError(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}

/** A short status message for everyone (aria-live region under the header). */
export function notify(message) {
  const notice = byId("notice");
  notice.textContent = message;
  notice.hidden = !message;
}

/** Ask with the page's <dialog>; resolves true when the person confirms. */
export function confirmAction(title, text, confirmLabel = "Erase") {
  const dialog = byId("confirm-dialog");
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  byId("confirm-yes").textContent = confirmLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}
