// The API reference: reads /api/v1/openapi.json and lists every operation.
// Built with DOM methods and textContent only, so nothing in the document runs as HTML.
"use strict";

(function () {
  const statusLine = document.getElementById("status");
  const container = document.getElementById("operations");

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function resolve(document, schema) {
    if (schema && schema.$ref) {
      const name = schema.$ref.split("/").pop();
      return { name: name, schema: document.components.schemas[name] || {} };
    }
    return { name: null, schema: schema || {} };
  }

  function describeType(document, schema) {
    if (!schema) return "";
    if (schema.$ref) return schema.$ref.split("/").pop();
    if (schema.enum) return schema.enum.join(" | ");
    if (schema.anyOf) return schema.anyOf.map((s) => describeType(document, s)).join(" | ");
    if (schema.type === "array") return describeType(document, schema.items) + "[]";
    let text = schema.type || "object";
    if (schema.format) text += " (" + schema.format + ")";
    if (schema.pattern) text += " matching " + schema.pattern;
    if (schema.minimum !== undefined || schema.maximum !== undefined) {
      text += " " + (schema.minimum ?? "") + "–" + (schema.maximum ?? "");
    }
    return text;
  }

  function table(headings, rows) {
    const result = element("table");
    const head = element("tr");
    headings.forEach((heading) => head.appendChild(element("th", heading)));
    result.appendChild(head);
    rows.forEach((cells) => {
      const row = element("tr");
      cells.forEach((cell) => row.appendChild(element("td", cell)));
      result.appendChild(row);
    });
    return result;
  }

  function fieldsOf(document, schema) {
    const { schema: resolved } = resolve(document, schema);
    const required = new Set(resolved.required || []);
    return Object.entries(resolved.properties || {}).map(([name, property]) => [
      name,
      describeType(document, property),
      required.has(name) ? "required" : "optional",
      property.description || "",
    ]);
  }

  function renderOperation(document, path, method, operation) {
    const card = element("section", null, "operation");
    card.id = operation.operationId;
    const title = element("h2");
    title.appendChild(element("span", method.toUpperCase(), "method method-" + method));
    title.appendChild(element("code", path));
    card.appendChild(title);
    card.appendChild(element("p", operation.summary, "summary"));
    if (operation.description) card.appendChild(element("p", operation.description));

    const security = operation.security || [];
    const ways = security.length === 0 ? "none (public)" : security.map((option) => Object.keys(option).join(" + ")).join(", or ");
    card.appendChild(element("p", "Authentication: " + ways));

    if ((operation.parameters || []).length > 0) {
      card.appendChild(element("h3", "Parameters"));
      card.appendChild(table(["name", "in", "type", "", "description"], operation.parameters.map((p) => [
        p.name, p.in, describeType(document, p.schema), p.required ? "required" : "optional", p.description || "",
      ])));
    }
    if (operation.requestBody) {
      const body = operation.requestBody.content["application/json"].schema;
      const { name } = resolve(document, body);
      card.appendChild(element("h3", "JSON body: " + name + " (unknown fields are refused)"));
      card.appendChild(table(["field", "type", "", "description"], fieldsOf(document, body)));
    }
    card.appendChild(element("h3", "Responses"));
    card.appendChild(table(["status", "body", "meaning"], Object.entries(operation.responses).map(([code, response]) => {
      const content = response.content && response.content["application/json"];
      return [code, content ? describeType(document, content.schema) : "(empty)", response.description || ""];
    })));
    return card;
  }

  fetch("/api/v1/openapi.json", { credentials: "same-origin" })
    .then((response) => {
      if (!response.ok) throw new Error("openapi.json answered " + response.status);
      return response.json();
    })
    .then((document) => {
      let count = 0;
      Object.entries(document.paths).forEach(([path, methods]) => {
        Object.entries(methods).forEach(([method, operation]) => {
          container.appendChild(renderOperation(document, path, method, operation));
          count += 1;
        });
      });
      statusLine.textContent = count + " operations, from " + document.info.title + " (OpenAPI " + document.openapi + ").";
    })
    .catch((error) => {
      statusLine.textContent = "Could not load the operations: " + error.message;
      statusLine.className = "error";
    });
})();
