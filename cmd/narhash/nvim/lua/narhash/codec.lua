-- Hash formats for the statusline: the plugin receives SRI (sha256-<base64>)
-- and shows it as SRI, Nix's base 32 or base 16. Plain arithmetic, so it
-- runs on any Lua 5.1 (no bit library needed).

local M = {}

M.formats = { sri = true, nix32 = true, base16 = true }

local b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local nix32 = '0123456789abcdfghijklmnpqrsvwxyz' -- Nix's alphabet: no e, o, u, t

local function decode64(s)
  local bytes, acc, bits = {}, 0, 0
  for i = 1, #s do
    local c = s:sub(i, i)
    if c == '=' then
      break
    end
    local v = b64:find(c, 1, true)
    if not v then
      return nil
    end
    acc = acc * 64 + (v - 1)
    bits = bits + 6
    if bits >= 8 then
      bits = bits - 8
      local p = 2 ^ bits
      bytes[#bytes + 1] = math.floor(acc / p)
      acc = acc % p
    end
  end
  return bytes
end

-- encode32 is Nix's base 32: the digest read as a little-endian number,
-- printed 5 bits at a time from the most significant end.
local function encode32(bytes)
  local n = #bytes
  local len = math.floor((n * 8 - 1) / 5) + 1
  local out = {}
  for k = len - 1, 0, -1 do
    local b = k * 5
    local i, j = math.floor(b / 8), b % 8
    local c = math.floor(bytes[i + 1] / 2 ^ j)
    if i + 1 < n then
      c = c + bytes[i + 2] * 2 ^ (8 - j)
    end
    out[#out + 1] = nix32:sub(c % 32 + 1, c % 32 + 1)
  end
  return table.concat(out)
end

--- convert turns an SRI hash into format; nil if it is not SRI.
function M.convert(sri, format)
  if format == 'sri' then
    return sri
  end
  local digest = sri:match('^sha256%-(.+)$')
  local bytes = digest and decode64(digest)
  if not bytes or #bytes ~= 32 then
    return nil
  end
  if format == 'nix32' then
    return encode32(bytes)
  end
  if format == 'base16' then
    local hex = {}
    for i, b in ipairs(bytes) do
      hex[i] = string.format('%02x', b)
    end
    return table.concat(hex)
  end
  return nil
end

return M
