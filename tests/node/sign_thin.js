// Signs a thin event notification with stripe-node, Stripe's own Node library, and parses
// it back with stripe-node's parseEventNotification, as a Node app would.
// stdin: {"payload": "<JSON text>", "secret": "whsec_..."}
// stdout: {"header": "t=...,v1=...", "id": "...", "type": "..."}
"use strict";
const Stripe = require("stripe");

const stripe = new Stripe("sk_test_unused"); // signing and parsing send no request
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const { payload, secret } = JSON.parse(input);
  const header = stripe.webhooks.generateTestHeaderString({ payload, secret });
  const notification = stripe.parseEventNotification(payload, header, secret);
  process.stdout.write(
    JSON.stringify({ header, id: notification.id, type: notification.type }),
  );
});
