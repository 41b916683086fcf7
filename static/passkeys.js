// Passkeys (WebAuthn) in the browser: the only script InvoiceApp has.
//
// A form marked data-passkey="register" or data-passkey="authenticate" runs one
// ceremony when submitted:
//   1. POST to its data-options URL; the server answers with a fresh, single-use challenge.
//   2. navigator.credentials.create() / .get(): the device asks for its PIN or fingerprint,
//      then signs the challenge together with this page's origin.
//   3. POST the signed answer to the form's action; the server verifies it and answers
//      {"redirect": "..."}, where the browser goes next.
// Posts are ordinary form bodies carrying the CSRF token in the X-CSRFToken header, like
// every other change on this site. No private key ever leaves the device.
(function () {
  "use strict";

  function toBytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: toBytes(item.id) });
    });
  }

  function creationOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.user = Object.assign({}, json.user, { id: toBytes(json.user.id) });
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  function requestOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var json = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toBase64url(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = toBase64url(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toBase64url(response.authenticatorData);
      json.response.signature = toBase64url(response.signature);
      if (response.userHandle) json.response.userHandle = toBase64url(response.userHandle);
    }
    return json;
  }

  function post(url, form, extra) {
    var body = new URLSearchParams(new FormData(form));
    Object.keys(extra).forEach(function (name) { body.set(name, extra[name]); });
    var token = form.querySelector('input[name="csrf_token"]');
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token ? token.value : "", Accept: "application/json" },
      body: body,
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, data: data };
      });
    });
  }

  function say(form, message) {
    var status = form.querySelector("[data-passkey-status]");
    if (!status) return;
    status.textContent = message;
    status.hidden = !message;
  }

  function failed(form, result) {
    var error = (result.data && result.data.error) || {};
    if (error.reason === "reauthentication_required") {
      // The server names the proof page (it knows whether a second factor is needed);
      // only a path on this site is followed.
      var proofPage = error.location || "";
      if (proofPage.indexOf("/reauthenticate?") !== 0) {
        proofPage = "/reauthenticate?next=" + encodeURIComponent(window.location.pathname);
      }
      window.location.assign(proofPage);
      return;
    }
    say(form, error.message || "That did not work. Nothing was changed.");
  }

  function run(form) {
    var registering = form.dataset.passkey === "register";
    var extra = {};
    var remember = form.dataset.rememberFrom && document.querySelector(form.dataset.rememberFrom);
    if (remember && remember.checked) extra.remember = "on";
    say(form, "");
    return post(form.dataset.options, form, extra).then(function (options) {
      if (!options.ok) return failed(form, options);
      var ceremony = registering
        ? navigator.credentials.create({ publicKey: creationOptions(options.data) })
        : navigator.credentials.get({ publicKey: requestOptions(options.data) });
      return ceremony.then(function (credential) {
        extra.credential = JSON.stringify(credentialJSON(credential));
        return post(form.action, form, extra);
      }).then(function (result) {
        if (result.ok && result.data.redirect) window.location.assign(result.data.redirect);
        else failed(form, result);
      });
    }).catch(function (error) {
      // NotAllowedError: the prompt was closed, timed out, or no passkey was chosen.
      say(form, error && error.name === "NotAllowedError"
        ? "The passkey prompt was closed or timed out. Nothing was changed."
        : "This browser could not use a passkey here. Nothing was changed.");
    });
  }

  if (!window.PublicKeyCredential || !navigator.credentials) return;
  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button");
      if (button) button.disabled = true;
      run(form).finally(function () { if (button) button.disabled = false; });
    });
  });
})();
